"""Where memlab's Hydra config tree is: ``conf/`` at the top of a source checkout (the project's
layout), or ``memlab/conf`` inside an installed wheel, where ``pyproject.toml`` maps the same folder
(``[tool.setuptools.package-dir]``). Everything that composes a config asks :func:`config_dir`.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def config_dir() -> Path:
    """The folder holding ``config.yaml``: the installed copy first, else the checkout's ``conf/``."""
    for candidate in (PACKAGE_DIR / "conf", PACKAGE_DIR.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"memlab's config tree (config.yaml) is in neither {PACKAGE_DIR / 'conf'} "
                            f"nor {PACKAGE_DIR.parent / 'conf'}: reinstall memlab")
