"""Packaging: memlab's packages plus the top-level ``conf/`` shipped inside the wheel as ``memlab/conf``
(where :func:`memlab.config_dir.config_dir` finds it in an installed memlab). Metadata: pyproject.toml."""
from pathlib import Path

from setuptools import find_packages, setup

CONF = Path(__file__).resolve().parent / "conf"
conf_packages = {"memlab.conf": "conf"} | {f"memlab.conf.{d.name}": f"conf/{d.name}"
                                           for d in sorted(CONF.iterdir()) if d.is_dir() and d.name != "local"}

setup(
    packages=find_packages(include=["memlab", "memlab.*"], exclude=["memlab.conf*"]) + list(conf_packages),
    package_dir=conf_packages,
    package_data={"memlab": ["assets/*"], **{name: ["*.yaml"] for name in conf_packages}},
)
