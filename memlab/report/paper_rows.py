"""The rows of docs/paper_vs_memlab.md for one data set: every number of the paper that memlab measures
(full-data accuracy, Fig. 1 at each X, Fig. 2 at each k, Tables 1 and 5, the own top-10% train accuracy),
the paper's value beside memlab's with its interval, n, the agreement word
(:mod:`memlab.report.agreement`) and the source that made it. A measurement with no run is a row that
says ``not run``.

Several runs of one measurement: removal sweeps are chosen per X (the sweep with the most paired
seeds, then the latest); other runs are grouped by their command without ``seed=`` and the group with
the most seeds (then the latest) is averaged over its seeds (one run per seed, the latest).
"""
from __future__ import annotations

import dataclasses
import math
import shlex
from pathlib import Path
from typing import Callable

import pandas as pd
from scipy import stats as st

from ..studies.removal_stats import FULL, t_interval
from . import run_results
from .agreement import (NO_CLAIM, STABILITY_TOLERANCE, at_least_verdict, interval_verdict, same_side_verdict,
                        sign_verdict)
from .paper_numbers import paper_note, paper_value, paper_xs, std_from_note
from .run_dirs import RunDir

NOT_RUN = "not run"
NOT_REPORTED = "not reported"
REMOVAL_XS = (10.0, 30.0, 50.0)  # always shown, run or not
IMAGE_KEYS = {"cifar10"}  # the paper's image set: Fig. 2 masks 7x7 cells, not tokens


@dataclasses.dataclass
class Source:
    """What made a row's memlab value: the command, its dirs and their summed wall time."""
    command: str
    paths: list[Path]
    seconds: float | None
    epochs: int | None = None  # training epochs of its runs (None: not recorded, or they differ)


@dataclasses.dataclass
class Row:
    measurement: str
    x: str
    paper: str
    memlab: str
    interval: str = ""
    n: str = ""
    agreement: str = NO_CLAIM
    source: Source | None = None
    detectable: str = ""  # Fig. 1: the smallest true difference the design finds with 80% power (pp)


# -- formatting -------------------------------------------------------------------------------------
def _num(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _interval(low: float | None, high: float | None, digits: int = 2, signed: bool = False) -> str:
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f"[{_num(low, digits, signed)}, {_num(high, digits, signed)}]"


def _mean_std(mean: float, std: float | None, digits: int = 2) -> str:
    return _num(mean, digits) + (f" ± {_num(std, digits)}" if std is not None and math.isfinite(std) else "")


def _seeds(n: int, what: str = "seed") -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _paper(value: float | None, digits: int = 2) -> str:
    return NOT_REPORTED if value is None else _num(value, digits)


def _paper_diff(value: float | None) -> str:
    return NOT_REPORTED if value is None else _num(value, signed=True)


def _mean_interval(mean: float, std: float, n: int) -> tuple[float, float]:
    """The 95% Student-t interval of a mean from its std over n values (NaN below 2)."""
    if n < 2 or not math.isfinite(std):
        return math.nan, math.nan
    half = float(st.t.ppf(0.975, n - 1) * std / math.sqrt(n))
    return mean - half, mean + half


# -- choosing runs ----------------------------------------------------------------------------------
def _group_key(run: RunDir) -> tuple:
    if run.overrides is None:
        return ("dir", str(run.path))
    return tuple(o for o in run.overrides if o.split("=", 1)[0].lstrip("+~") != "seed")


def _group_source(runs: list[RunDir]) -> Source:
    if len(runs) == 1:
        command = runs[0].command
    else:
        seeds = ",".join(str(r.seed) for r in sorted(runs, key=lambda r: (r.seed is None, r.seed)))
        others = [shlex.quote(o) for o in _group_key(runs[0])]  # grouped runs all recorded their overrides
        command = " ".join(["python -m memlab -m", *others, f"seed={seeds}"])
    times = [r.seconds for r in runs if r.seconds is not None]
    return Source(command, [r.path for r in runs], sum(times) if times else None, _epochs(runs))


def _epochs(runs: list[RunDir]) -> int | None:
    found = {r.epochs for r in runs}
    return found.pop() if len(found) == 1 else None


Members = list[tuple[RunDir, object]]  # (run, the value read from it)


def best_group(runs: list[RunDir], read: Callable[[RunDir], object]) -> tuple[Members, Source] | None:
    """The runs (one per seed, the latest) of the command with the most seeds that ``read`` finds a value
    in, with their values and source; None when no run has one."""
    groups: dict[tuple, dict] = {}
    for run in sorted(runs, key=lambda r: r.stamp):
        value = read(run)
        if value is not None:
            groups.setdefault(_group_key(run), {})[run.seed] = (run, value)  # the later run of a seed wins
    if not groups:
        return None
    chosen = max(groups.values(), key=lambda g: (len(g), max(r.stamp for r, _ in g.values())))
    members = sorted(chosen.values(), key=lambda m: m[0].stamp)  # the latest run last
    return members, _group_source([r for r, _ in members])


def _sweep_source(run: RunDir) -> Source:
    return Source(run.command, [run.path], run.seconds, run.epochs)


def _removal_tables(sweeps: list[RunDir]) -> list[tuple[RunDir, pd.DataFrame]]:
    tables = [(s, run_results.removal_comparison(s)) for s in sorted(sweeps, key=lambda s: s.stamp)]
    return [(s, t) for s, t in tables if t is not None and len(t)]


def _pick_sweep(tables, x: float) -> tuple[RunDir, pd.DataFrame] | None:
    """The sweep with the most paired (else plain) seeds at X, then the latest; its rows at X."""
    best, best_key = None, None
    for sweep, table in tables:
        rows = table[(table["removal_pct"] - x).abs() < 1e-9]
        if not len(rows):
            continue
        pairs = rows["n_pairs"].fillna(0).max() if "n_pairs" in rows else 0
        key = (float(pairs), float(rows["n_seeds"].max()), sweep.stamp)
        if best_key is None or key >= best_key:
            best, best_key = (sweep, rows), key
    return best


# -- the measurements -------------------------------------------------------------------------------
def full_data_rows(paper, paper_key: str, tables, runs: list[RunDir]) -> list[Row]:
    value = paper_value(paper, paper_key, "fig1", "full")
    std = std_from_note(paper_note(paper, paper_key, "fig1", "full"))
    paper_text = NOT_REPORTED if value is None else _mean_std(value, std)
    candidates = []  # (n seeds, is sweep, stamp, mean, std, source)
    for sweep, table in tables:
        full = table[table["strategy"] == FULL]
        if len(full):
            r = full.iloc[0]
            candidates.append((int(r.n_seeds), 1, sweep.stamp, 100 * r.mean_acc, 100 * r.std_acc, _sweep_source(sweep)))
    group = best_group(runs, run_results.test_accuracy)
    if group is not None:
        values = pd.Series([100 * v for _, v in group[0]], dtype=float)
        std_runs = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        candidates.append((len(values), 0, max(r.stamp for r, _ in group[0]), float(values.mean()), std_runs, group[1]))
    name = "Full-data test accuracy (%), mean ± std over seeds"
    if not candidates:
        return [Row(name, "", paper_text, NOT_RUN)]
    n, _, _, mean, std_m, source = max(candidates, key=lambda c: c[:3])
    low, high = _mean_interval(mean, std_m, n)
    return [Row(name, "", paper_text, _mean_std(mean, std_m), _interval(low, high), _seeds(n), NO_CLAIM, source)]


def _arm_label(arm: str) -> str:
    base, _, score = arm.partition("[")
    return f"{base}-X% removed" + (f" (by {score.rstrip(']')})" if score else "")


def _pairs(r) -> tuple[int, bool]:
    """(n, paired) of one arm's row: its paired seeds, or its seeds where no pairs were recorded (a slim copy
    that kept only removal_stats.csv)."""
    paired = math.isfinite(getattr(r, "n_pairs", math.nan))
    return int(r.n_pairs if paired else r.n_seeds), paired


def _removal_xs(paper, paper_key: str, tables) -> list[float]:
    return sorted({x for x in paper_xs(paper, paper_key, "fig1") if x > 0}
                  | {float(x) for _, t in tables for x in t["removal_pct"] if x > 0} | set(REMOVAL_XS))


def top_minus_random(paper, paper_key: str, runs: list[RunDir]) -> pd.DataFrame:
    """Fig. 1's top − random removed at every X, in pp: ``x, paper, memlab, low, high, n_pairs, paired,
    epochs`` (memlab's from the sweep and arm its table row shows; NaN where not run or not reported;
    ``paired`` False where only removal_stats.csv was left, ``n_pairs`` then counts seeds)."""
    tables = _removal_tables([r for r in runs if r.kind == "sweep"])
    out = []
    for x in _removal_xs(paper, paper_key, tables):
        top, rand = (paper_value(paper, paper_key, "fig1", arm, x) for arm in ("top", "random"))
        row = {"x": x, "paper": top - rand if top is not None and rand is not None else math.nan,
               "memlab": math.nan, "low": math.nan, "high": math.nan, "n_pairs": 0, "paired": False, "epochs": None}
        picked = _pick_sweep(tables, x)
        # the first top arm, as the table shows it (a sweep ranked by several scores names them top[score])
        found = picked[1][picked[1]["strategy"].str.startswith("top")] if picked is not None else None
        if found is not None and len(found) and math.isfinite(found.iloc[0]["diff_vs_random"]):
            r = found.iloc[0]
            n, paired = _pairs(r)
            row.update(memlab=100 * r["diff_vs_random"], low=100 * r["ci_low"], high=100 * r["ci_high"],
                       n_pairs=n, paired=paired, epochs=picked[0].epochs)
        out.append(row)
    return pd.DataFrame(out)


def removal_rows(paper, paper_key: str, tables) -> list[Row]:
    xs = _removal_xs(paper, paper_key, tables)
    rows = []
    for x in xs:
        picked = _pick_sweep(tables, x)
        at = f"{x:g}%"
        top_paper = paper_value(paper, paper_key, "fig1", "top", x)
        random_paper = paper_value(paper, paper_key, "fig1", "random", x)
        paper_diff = top_paper - random_paper if top_paper is not None and random_paper is not None else None
        if picked is None:
            rows += [Row(f"Fig. 1: test acc (%), {arm}-X% removed", at, _paper(v), NOT_RUN)
                     for arm, v in (("top", top_paper), ("random", random_paper))]
            rows.append(Row("Fig. 1: top − random (pp)", at, _paper_diff(paper_diff), NOT_RUN))
            continue
        sweep, table = picked
        source = _sweep_source(sweep)
        arms = {r.strategy: r for r in table.itertuples()}
        shown = [a for a in arms if a.startswith("top")] or ["top"]
        shown += ["random"] + [a for a in arms if a.startswith("bottom")]
        for arm in shown:
            base = arm.split("[")[0]
            paper_arm = {"top": top_paper, "random": random_paper}.get(base)
            measurement = f"Fig. 1: test acc (%), {_arm_label(arm)}"
            if arm not in arms:
                rows.append(Row(measurement, at, _paper(paper_arm), NOT_RUN))
                continue
            r = arms[arm]
            low, high = _mean_interval(100 * r.mean_acc, 100 * r.std_acc, int(r.n_seeds))
            rows.append(Row(measurement, at, _paper(paper_arm), _mean_std(100 * r.mean_acc, 100 * r.std_acc),
                            _interval(low, high), _seeds(int(r.n_seeds)), NO_CLAIM, source))
        for arm in [a for a in shown if not a.startswith("random")]:
            base, _, score = arm.partition("[")
            measurement = f"Fig. 1: {base} − random (pp)" + (f" (by {score.rstrip(']')})" if score else "")
            r = arms.get(arm)
            if r is None or not math.isfinite(r.diff_vs_random):
                rows.append(Row(measurement, at, _paper_diff(paper_diff) if base == "top" else NOT_REPORTED,
                                NOT_RUN if r is None or "random" not in arms else "no paired seeds"))
                continue
            pairs, _ = _pairs(r)
            low, high = 100 * r.ci_low, 100 * r.ci_high
            verdict = (interval_verdict(paper_diff, low, high, paper_sign=-1) if base == "top" else NO_CLAIM)
            mde = getattr(r, "mde", math.nan)
            rows.append(Row(measurement, at, _paper_diff(paper_diff if base == "top" else None),
                            _num(100 * r.diff_vs_random, signed=True), _interval(low, high, signed=True),
                            _seeds(pairs, "paired seed"), verdict, source,
                            _num(100 * mde) if isinstance(mde, float) and math.isfinite(mde) else ""))
    return rows


def _reduction_table(run: RunDir) -> pd.DataFrame | None:
    table = run_results.reduction_rates(run)
    return None if table is None else table.pivot_table(index="k_percent", columns="method", values="reduction_rate")


def reduction_rows(paper, paper_key: str, runs: list[RunDir], masked: str = "tokens") -> list[Row]:
    """Fig. 2 at every k: ``masked`` names what random masking replaces (``tokens``; ``cells`` for images)."""
    group = best_group(runs, _reduction_table)
    ks = set(paper_xs(paper, paper_key, "fig2"))
    if group is not None:
        ks |= {float(k) for _, t in group[0] for k in t.index}
    rows = []
    for k in sorted(ks):
        at = f"{k:g}%"
        attr_paper = paper_value(paper, paper_key, "fig2", "attribution", k)
        rand_paper = paper_value(paper, paper_key, "fig2", "random", k)
        paper_diff = attr_paper - rand_paper if attr_paper is not None and rand_paper is not None else None
        per_run = []
        if group is not None:
            for _, t in group[0]:
                if k in t.index and {"attribution", "random"} <= set(t.columns):
                    per_run.append((100 * t.loc[k, "attribution"], 100 * t.loc[k, "random"]))
        if not per_run:
            rows += [Row("Fig. 2: reduction rate (%), attribution", at, _paper(attr_paper), NOT_RUN),
                     Row(f"Fig. 2: reduction rate (%), random {masked}", at, _paper(rand_paper), NOT_RUN),
                     Row("Fig. 2: attribution − random (pp)", at, _paper_diff(paper_diff), NOT_RUN)]
            continue
        source, n = group[1], len(per_run)
        for i, (label, value) in enumerate((("attribution", attr_paper), (f"random {masked}", rand_paper))):
            mean, low, high = t_interval([p[i] for p in per_run])
            rows.append(Row(f"Fig. 2: reduction rate (%), {label}", at, _paper(value), _num(mean),
                            _interval(low, high), _seeds(n), NO_CLAIM, source))
        mean, low, high = t_interval([a - r for a, r in per_run])
        verdict = (interval_verdict(paper_diff, low, high, paper_sign=1) if n > 1
                   else sign_verdict(paper_diff if paper_diff is not None else 1.0, mean))
        rows.append(Row("Fig. 2: attribution − random (pp)", at, _paper_diff(paper_diff), _num(mean, signed=True),
                        _interval(low, high, signed=True), _seeds(n), verdict, source))
    return rows


def _group_name(group: str) -> str:
    """typicality.csv's ``top-10%`` / ``all`` / ``bottom-10%`` -> the paper's ``top10`` / ``all`` / ``bottom10``."""
    return group.replace("-", "").replace("%", "")


def typicality_rows(paper, paper_key: str, runs: list[RunDir]) -> list[Row]:
    group = best_group(runs, run_results.typicality)
    table = group[0][-1][1] if group is not None else None  # the typicality of the chosen ranking
    quantities = list(paper[(paper["dataset"] == paper_key) & (paper["figure"] == "table1")]["quantity"])
    memlab = {}
    if table is not None:
        for r in table.itertuples():
            quantity = f"{str(r.class_name).lower()}_{_group_name(str(r.group))}"
            memlab[quantity] = (float(r.positive_fraction_pct), int(r.n))
        quantities += [q for q in memlab if q not in quantities]
    rows = []
    for q in quantities:
        cls, _, part = q.rpartition("_")
        value = paper_value(paper, paper_key, "table1", q)
        name = f"Table 1: positive phrases (%), {cls} {part.replace('top', 'top-').replace('bottom', 'bottom-')}" + \
            ("%" if part != "all" else "")
        if q not in memlab:
            rows.append(Row(name, "", _paper(value), NOT_RUN))
            continue
        mine, n = memlab[q]
        verdict = NO_CLAIM
        if part != "all":
            paper_all, mine_all = paper_value(paper, paper_key, "table1", f"{cls}_all"), memlab.get(f"{cls}_all")
            if value is not None and paper_all is not None and mine_all is not None:
                verdict = sign_verdict(value - paper_all, mine - mine_all[0])
        rows.append(Row(name, "", _paper(value), _num(mine), "", _seeds(n, "sentence"), verdict, group[1]))
    return rows


def stability_rows(paper, paper_key: str, runs: list[RunDir]) -> list[Row]:
    group = best_group(runs, run_results.seed_spearman)
    lowest, highest = (paper_value(paper, paper_key, "table5", q) for q in ("spearman_min", "spearman_max"))
    if group is None and lowest is None and highest is None:
        return []
    names = ("Table 5: Spearman between seeds, lowest", "Table 5: Spearman between seeds, highest")
    if group is None:
        return [Row(names[0], "", _paper(lowest), NOT_RUN), Row(names[1], "", _paper(highest), NOT_RUN)]
    low, high, n = group[0][-1][1]
    verdict = at_least_verdict(lowest, low, STABILITY_TOLERANCE)
    return [Row(names[0], "", _paper(lowest), _num(low, 3), "", _seeds(n), verdict, group[1]),
            Row(names[1], "", _paper(highest), _num(high, 3), "", _seeds(n), NO_CLAIM, group[1])]


def own_top10_rows(paper, paper_key: str, runs: list[RunDir]) -> list[Row]:
    value = paper_value(paper, paper_key, "own_top10", "train_acc")
    group = best_group(runs, run_results.top10_train_accuracy)
    if group is None and value is None:
        return []
    name = "Own top-10% memorized: train accuracy (%)"
    if group is None:
        return [Row(name, "", _paper(value), NOT_RUN)]
    mean, low, high = t_interval([100 * v for _, v in group[0]])
    return [Row(name, "", _paper(value), _num(mean), _interval(low, high), _seeds(len(group[0])),
                same_side_verdict(value, mean, 50.0), group[1])]


def dataset_rows(paper: pd.DataFrame, paper_key: str, runs: list[RunDir]) -> list[Row]:
    """Every row of one data set: ``paper_key`` names the paper's rows, ``runs`` are memlab's (one data set)."""
    tables = _removal_tables([r for r in runs if r.kind == "sweep"])
    plain = [r for r in runs if r.kind == "run"]
    return (full_data_rows(paper, paper_key, tables, plain) + removal_rows(paper, paper_key, tables)
            + reduction_rows(paper, paper_key, plain, masked="cells" if paper_key in IMAGE_KEYS else "tokens")
            + typicality_rows(paper, paper_key, plain)
            + stability_rows(paper, paper_key, plain) + own_top10_rows(paper, paper_key, plain))
