"""Archived run files without the absolute paths of the machine that made them: Hydra's ``.hydra/*.yaml``
(``runtime.cwd``, ``output_dir``, ``hydra.sweep.dir=...``), ``metrics.json`` values, ``removal_job.json``'s
ranking and reused-result paths. A path under the run's working folder (``hydra.runtime.cwd``, or the
current folder) becomes relative to it (the folder itself becomes ``.``); one under a home folder
becomes ``~/...``; any other absolute path loses its first two parts (``/scratch/me/x`` ->
``<elsewhere>/x``), except system folders (``/usr``, ``/etc``, ...), which are the same on every machine.

Used by ``python -m memlab.report archive``; for a folder archived before:
``python -m memlab.report.portable_paths docs/results`` rewrites it in place.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from ..utils.io import atomic_write_text

TEXT_SUFFIXES = {".json", ".yaml", ".csv", ".md", ".txt", ".html"}
ELSEWHERE = "<elsewhere>"
SYSTEM_FOLDERS = ("/usr/", "/etc/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/opt/", "/dev/", "/proc/", "/sys/")
HOME = re.compile(r"^/(?:home|Users)/[^/]+(?=/|$)|^/root(?=/|$)")
# An absolute path of at least two parts, where a value starts (line start, after a space, a quote, "=", ",",
# a bracket): not inside a word, a URL ("http://h/x"), an HTML tag ("</b>") or an interpolation ("${a}/b/c").
ABSOLUTE_PATH = re.compile(r"(?:^|(?<=[\s\"'=,(\[>]))(?:/[\w.+@%=~-]+){2,}/?", re.MULTILINE)


def recorded_cwds(hydra_files) -> set[str]:
    """The working folders Hydra recorded (``hydra.runtime.cwd``) in these ``.hydra/hydra.yaml`` files."""
    import yaml

    cwds = set()
    for hydra_file in hydra_files:
        try:
            cwd = ((yaml.safe_load(hydra_file.read_text()) or {}).get("hydra") or {}).get("runtime", {}).get("cwd")
        except (yaml.YAMLError, AttributeError, OSError):
            continue  # not Hydra's file: nothing recorded
        if isinstance(cwd, str) and cwd.startswith("/"):
            cwds.add(cwd.rstrip("/") or "/")
    return cwds


def portable_path(path: str, roots: list[str]) -> str:
    """One absolute path made portable (see the module docstring); ``roots`` longest first."""
    for root in roots:
        if path.rstrip("/") == root:
            return "."
        if path.startswith(root + "/"):
            return path[len(root) + 1:]
    if path.startswith(SYSTEM_FOLDERS):
        return path
    home = HOME.match(path)
    if home:
        return "~" + path[home.end():]
    parts = path.split("/")  # ['', first, second, rest...]
    return "/".join([ELSEWHERE, *parts[3:]]) if len(parts) > 3 else ELSEWHERE


def portable_text(text: str, roots) -> str:
    """``text`` with every absolute path in it made portable."""
    ordered = sorted({r.rstrip("/") for r in roots if r and r != "/"}, key=len, reverse=True)
    return ABSOLUTE_PATH.sub(lambda m: portable_path(m.group(0), ordered), text)


def run_roots(files) -> list[str]:
    """Where the paths in a run's ``files`` are relative to: the cwds its hydra.yaml files recorded, and the
    current folder."""
    return sorted(recorded_cwds(p for p in files if p.name == "hydra.yaml") | {str(Path.cwd().resolve())})


def make_tree_portable(folder: Path, roots=None) -> list[Path]:
    """Rewrite every text file under ``folder`` in place; returns the files that changed."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
    roots = run_roots(files) if roots is None else roots
    changed = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        new = portable_text(text, roots)
        if new != text:
            atomic_write_text(path, new)
            changed.append(path)
    return changed


def main(argv: list[str]) -> int:
    if not argv or any(not Path(a).is_dir() for a in argv):
        print("usage: python -m memlab.report.portable_paths FOLDER...  (archived run files, rewritten in place)",
              file=sys.stderr)
        return 2
    for folder in argv:
        print(f"{len(make_tree_portable(Path(folder)))} files rewritten under {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
