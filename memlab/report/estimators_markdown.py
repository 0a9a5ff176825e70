"""docs/estimators.md as text: which memorization estimator to use. The three-line answer, the estimator x
data set summary, then per data set the reference, the ranked table, the verdict from the intervals and
the instances on which the two leading estimators disagree most; last, the runs it came from. A value
that is not there is shown as "–"."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..studies.estimator_choice import TEXT_COLUMNS, Verdict, leader_disagreements, leading_rivals
from .estimator_runs import DatasetResult
from .paper_markdown import DATA_NAMES, _cell, _shown_path, format_seconds

DASH = "–"
TABLE_HEAD = ["estimator", "Spearman with FZ (95% CI)", "÷ ceiling", "top-10% overlap with FZ",
              "label-error AUROC", "cost (× one training epoch)"]
BASIS = {"paired": "the 95% paired-bootstrap interval of its difference to the leader holds 0",
         "overlap": "its own 95% interval reaches the leader's; this run kept no paired difference, so the test is looser"}


def number(value, digits: int = 2) -> str:
    value = float(value) if value is not None else float("nan")
    return f"{value:.{digits}f}" if np.isfinite(value) else DASH


def cost_text(value) -> str:
    value = float(value) if value is not None else float("nan")
    if not np.isfinite(value):
        return DASH
    return "0" if value == 0 else f"{value:.3g}"


def interval(point, low, high, digits: int = 2) -> str:
    if not np.isfinite(float(point)):
        return DASH
    bounds = f" ({number(low, digits)} to {number(high, digits)})" if np.isfinite(float(low)) and np.isfinite(float(high)) else ""
    return number(point, digits) + bounds


def dataset_name(key: str) -> str:
    return DATA_NAMES.get(key, key)


def _names(scores) -> str:
    return ", ".join(f"`{s}`" for s in scores)


def _row(table: pd.DataFrame, score: str) -> pd.Series:
    return table[table["score"] == score].iloc[0]


def reference_lines(result: DatasetResult) -> list[str]:
    runs = result.runs
    k = str(result.models) if result.models else DASH
    lines = [f"- **Reference**: Feldman-Zhang memorization from K = {k} subset models"
             f"{f' over {result.instances} instances' if result.instances else ''}; split-half reliability "
             f"{number(result.reliability)}, so the ceiling sqrt(reliability) = {number(result.ceiling)}.",
             f"- **Run**: `{runs.validate.command}` — `{_shown_path(runs.validate.path)}`; wall time "
             f"{format_seconds(runs.validate.seconds)}. Intervals from {result.interval_source}."]
    if runs.older:
        lines.append(f"- Older validate runs of this data set, not used: {', '.join(f'`{_shown_path(r.path)}`' for r in runs.older)}.")
    if runs.noise:
        lines.append(f"- **Label-noise run** (AUROC): `{runs.noise.command}` — `{_shown_path(runs.noise.path)}`.")
    else:
        lines.append("- **Label-noise run**: none for this data set (AUROC –).")
    return lines


def estimator_table(table: pd.DataFrame, v: Verdict) -> list[str]:
    lines = ["| " + " | ".join(TABLE_HEAD) + " |", "|---|---|---:|---:|---:|---:|"]
    for row in table.itertuples(index=False):
        mark = " (leader)" if row.score == v.leader else " (tied)" if row.score in v.tied else ""
        lines.append(f"| `{_cell(row.score)}`{mark} | {interval(row.spearman, row.spearman_ci_low, row.spearman_ci_high)} | "
                     f"{interval(row.ratio, row.ratio_low, row.ratio_high)} | {number(row.overlap)} | "
                     f"{number(row.auroc)} | {cost_text(row.cost)} |")
    return lines


def verdict_lines(table: pd.DataFrame, v: Verdict) -> list[str]:
    if v.leader is None:
        return ["**Verdict**: no estimator has a Spearman with the reference in this run."]
    lead = _row(table, v.leader)
    text = (f"**Verdict**: the leader is `{v.leader}`, Spearman {interval(lead.spearman, lead.spearman_ci_low, lead.spearman_ci_high)}"
            f" = {number(lead.ratio)} of the ceiling.")
    if v.basis == "none":
        return [text + " This run holds no intervals, so ties with the leader are not tested."]
    text += f" Tied with it within noise ({BASIS[v.basis]}): {_names(v.tied) or 'none'}."
    cost = _row(table, v.recommended).cost
    if np.isfinite(cost):
        text += f" Recommended: `{v.recommended}`, the cheapest of these ({cost_text(cost)} × one training epoch)."
    else:
        text += f" Recommended: `{v.recommended}` (no cost recorded for these estimators)."
    return [text + f" Clearly worse: {_names(v.worse) or 'none'}."]


def disagreement_lines(result: DatasetResult, n: int = 5) -> list[str]:
    ranked = result.table[np.isfinite(result.table["spearman"].to_numpy(dtype=float))]
    rivals = leading_rivals(list(ranked["score"]))
    if rivals is None:
        return []
    first, second = rivals
    head = (f"**Where `{first}` and `{second}`, the leaders of two kinds of estimator, disagree most** "
            "(rank percentile, 100 = most memorized)")
    if result.scores is None or first not in result.scores or second not in result.scores:
        return [head + ": – (the run's scores.csv is not among its files)."]
    rows = leader_disagreements(result.scores, first, second, n)
    text = next((c for c in TEXT_COLUMNS if c in rows), None)
    columns = ["sample_index", f"`{first}` pct", f"`{second}` pct", "fz_mem", "label"] + ([text] if text else [])
    lines = [head + ":", "", "| " + " | ".join(columns) + " |", "|" + "---:|" * 5 + ("---|" if text else "")]
    for _, row in rows.iterrows():
        cells = [str(int(row["sample_index"])), number(row[f"pct_{first}"], 0), number(row[f"pct_{second}"], 0),
                 number(row.get("fz_mem", np.nan)), _cell(row["label"]) if "label" in rows and pd.notna(row["label"]) else DASH]
        if text:
            value = "" if pd.isna(row[text]) else str(row[text])
            cells.append(_cell(value[:160] + ("…" if len(value) > 160 else "")))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary_table(results: list[tuple[DatasetResult, Verdict]]) -> list[str]:
    """Estimator x data set: Spearman ÷ ceiling, bold where the estimator leads or ties the leader."""
    ratios = pd.DataFrame({r.runs.dataset: r.table.set_index("score")["ratio"] for r, _ in results})
    ratios = ratios.loc[ratios.mean(axis=1).sort_values(ascending=False, kind="stable").index]
    lines = ["| estimator | " + " | ".join(dataset_name(r.runs.dataset) for r, _ in results) + " |",
             "|---|" + "---:|" * len(results)]
    for score, row in ratios.iterrows():
        cells = []
        for result, v in results:
            value = number(row[result.runs.dataset])
            cells.append(f"**{value}**" if score in v.top and value != DASH else value)
        lines.append(f"| `{_cell(score)}` | " + " | ".join(cells) + " |")
    return lines


def advice_lines(choice: dict, n_datasets: int) -> list[str]:
    """The three lines that say which estimator to use and what it costs."""
    name = choice["name"]
    if name is None:
        return ["No estimator could be ranked: no validate run holds a Spearman with the reference.", "", ""]
    ratios = [v for v in choice["ratios"].values() if np.isfinite(v)]
    span = f"{number(min(ratios))}–{number(max(ratios))}" if len(ratios) > 1 else number(ratios[0]) if ratios else DASH
    first = (f"Use `{name}`: it leads or is tied with the leader within noise (95% intervals) on {len(choice['top_on'])} of "
             f"{n_datasets} data sets ({', '.join(dataset_name(d) for d in choice['top_on'])}), at {span} of the ceiling "
             "the Feldman-Zhang reference's noise allows.")
    costs = {d: c for d, c in choice["costs"].items() if np.isfinite(c)}
    if costs:
        second = (f"It costs {', '.join(f'{cost_text(c)} × one training epoch on {dataset_name(d)}' for d, c in costs.items())}"
                  ", beyond the one training run.")
    else:
        second = "Its cost beyond training is not recorded in these runs (–)."
    worse = choice["always_worse"]
    third = (f"Clearly worse than the leader on every data set: {_names(worse)}." if worse
             else "No estimator is clearly worse than the leader on every data set.")
    return [first, second, third]


def render(results: list[tuple[DatasetResult, Verdict]], choice: dict, header: list[str], figure_name: str,
           unused_noise: list) -> str:
    lines = [*header, "", "## Which estimator", "", *[f"{line}  " for line in advice_lines(choice, len(results))], "",
             "## Across data sets", "",
             "Spearman with Feldman-Zhang ÷ the ceiling; **bold**: the leader and the estimators tied with it.", "",
             *summary_table(results), "", f"![Spearman ÷ ceiling against cost]({figure_name})", ""]
    for result, v in results:
        lines += [f"## {dataset_name(result.runs.dataset)}", "", *reference_lines(result), "",
                  *estimator_table(result.table, v), "", *verdict_lines(result.table, v), ""]
        disagreements = disagreement_lines(result)
        lines += [*disagreements, ""] if disagreements else []
    lines += ["## Runs", ""]
    for result, _ in results:
        used = [result.runs.validate] + ([result.runs.noise] if result.runs.noise else [])
        older = result.runs.older + result.runs.older_noise
        lines.append(f"- {dataset_name(result.runs.dataset)}: {', '.join(f'`{_shown_path(r.path)}`' for r in used)}"
                     + (f"; older, not used: {', '.join(f'`{_shown_path(r.path)}`' for r in older)}" if older else ""))
    if unused_noise:
        lines.append(f"- label-noise runs of data sets without a validate run, not shown: "
                     f"{', '.join(f'`{_shown_path(r.path)}`' for r in unused_noise)}")
    return "\n".join(lines) + "\n"


def header_lines(command: str, date: str, commit: str, n_runs: int) -> list[str]:
    return [
        "# Which memorization estimator? memlab's estimator benchmark",
        "",
        f"Generated by `{command}` on {date} at git commit `{commit}` from {n_runs} runs (listed at the end). "
        "Do not edit by hand: re-run the command (`make estimators`).",
        "",
        "- **Spearman with FZ**: each estimator's Spearman correlation with the Feldman-Zhang memorization of the "
        "same training instances (`python -m memlab experiment=<data>_validate`), with its 95% bootstrap interval "
        "over instances.",
        "- **÷ ceiling**: the same ÷ sqrt(reliability of the reference), the highest correlation the reference's own "
        "noise allows: 1 is as good as measurable.",
        "- **Top-10% overlap**: the share of FZ's top 10% that the estimator's top 10% holds.",
        "- **Label-error AUROC**: how well the estimator finds flipped labels in the label-noise run of the same data "
        "set (`experiment=<data>_label_noise`).",
        "- **Cost**: the estimator's time beyond the one training run every estimator needs, in epochs of that "
        "training measured in the same run.",
        "- **Tied**: the 95% paired-bootstrap interval (same resampled instances for both) of the difference "
        "to the leader's Spearman holds 0. **Clearly worse**: that interval lies below 0.",
        f"- {DASH}: not in the run's files (an older run, or no label-noise run).",
    ]
