"""The Fig. 1 verdict sentence per data set (issue 29): made from the table's rows, so it says what they
say, on made-up rows and on the archived docs/results."""
from __future__ import annotations

import pytest

from conftest import ROOT
from memlab.report.paper_rows import Row, Source
from memlab.report.paper_verdict import verdict_sentence

FIG1 = "Fig. 1: top − random (pp)"
PAPER_NUMBERS = ROOT.parent / "shared" / "reference" / "paper_numbers.csv"


def row(x, memlab, interval, agreement, n="4 paired seeds", epochs=2, detects="1.10"):
    return Row(FIG1, x, "-0.70", memlab, interval, n, agreement, Source("cmd", [], None, epochs), detects)


def test_sentence_groups_the_xs_by_the_rows_verdict():
    rows = [row("10%", "-1.50", "[-2.00, -1.00]", "agrees"), row("20%", "not run", "", "—", n="", detects=""),
            row("30%", "+0.40", "[-0.20, +1.00]", "inconclusive"), row("50%", "+2.00", "[+1.00, +3.00]", "disagrees"),
            Row("Fig. 1: test acc (%), top-X% removed", "10%", "80", "81.00")]
    rows[1].source = None
    assert verdict_sentence("Toy", rows, paper_epochs=5) == (
        "Toy (4 seeds, 2 epochs, the paper's 5): agrees at 10% (-1.50 pp, 95% CI -2.00 to -1.00; detects 1.10 pp); "
        "disagrees at 50% (+2.00 pp, 95% CI +1.00 to +3.00; detects 1.10 pp); "
        "inconclusive at 30% (+0.40 pp, 95% CI -0.20 to +1.00; detects 1.10 pp); not run at 20%.")


def test_no_fig1_rows_no_sentence_and_unmeasured_says_so():
    assert verdict_sentence("Toy", [Row("Full-data test accuracy (%)", "", "90", "89")]) is None
    assert "not measured" in verdict_sentence("Toy", [row("10%", "not run", "", "—")])


@pytest.mark.skipif(not PAPER_NUMBERS.is_file(), reason="needs ../shared/reference/paper_numbers.csv")
def test_archived_sst2_sentence_says_disagrees_at_30(tmp_path):
    from memlab.report.paper_command import write_paper_report

    out, _ = write_paper_report([ROOT / "docs" / "results"], PAPER_NUMBERS, tmp_path / "paper.md", "test")
    sentences = [line for line in out.read_text().splitlines() if line.startswith("**Fig. 1 verdict**")]
    sst2 = next(s for s in sentences if "SST-2 (" in s)
    assert "disagrees at 30% (+0.03 pp, 95% CI -0.56 to +0.62; detects 0.79 pp)" in sst2
    assert "SST-2 (5 seeds, 5 epochs)" in sst2
    assert len(sentences) == 4  # SST-2, SNLI, Yahoo, the images
