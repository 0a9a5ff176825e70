"""The wheel carries the top-level conf/ as memlab/conf, so an installed (non-editable) memlab finds it."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

from conftest import CONF, ROOT


def test_the_built_wheel_contains_every_config(tmp_path):
    source = tmp_path / "source"  # a copy: building in place would leave build/ in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("memlab", "conf"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "local"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("memlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "memlab/conf/experiment/sst2_removal.yaml" in names
    assert "memlab/conf/config_dir.py" not in names and "memlab/config_dir.py" in names
    shipped = {f"memlab/conf/{p.relative_to(CONF).as_posix()}" for p in CONF.rglob("*.yaml")
               if "local" not in p.relative_to(CONF).parts}
    assert shipped <= names, sorted(shipped - names)[:5]


def test_config_dir_finds_the_checkout_tree():
    from memlab.config_dir import config_dir

    assert config_dir() == CONF
