"""``python -m memlab --help``: memlab's own page (groups read from conf/, examples), no config dump."""
import subprocess
import sys
from pathlib import Path

import pytest

from memlab.help import config_groups, help_text, wants_help

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_page_exits_0_with_groups_and_examples_and_no_config_dump(flag):
    done = subprocess.run([sys.executable, "-m", "memlab", flag], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    page = done.stdout
    for group in ("experiment", "setup", "study", "data", "model", "solver", "trainer", "recipe"):
        assert f"\n  {group} " in page
    assert "experiment=smoke_memorization" in page and "sst2_memorization" in page
    assert "--cfg job" in page and "--hydra-help" in page
    assert "defaults" not in page and "_target_" not in page and "== Config ==" not in page


def test_groups_and_options_come_from_the_config_tree(tmp_path):
    (tmp_path / "brand_new").mkdir()
    (tmp_path / "brand_new" / "zeta.yaml").write_text("a: 1\n")
    (tmp_path / "brand_new" / "alpha.yaml").write_text("a: 2\n")
    (tmp_path / "empty").mkdir()  # no options: not a group
    assert config_groups(tmp_path) == {"brand_new": ["alpha", "zeta"]}
    assert "  brand_new\n" in help_text(tmp_path) and "alpha zeta" in help_text(tmp_path)
    real = config_groups()
    assert "smoke_memorization" in real["experiment"] and "minilm" in real["model"]


def test_hydra_help_is_left_to_hydra():
    assert wants_help(["experiment=x", "-h"]) and not wants_help(["--hydra-help"])
