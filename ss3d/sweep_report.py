"""A sweep's aggregate: per variant, every headline metric over seeds; each variant against the
baseline variant on the same seeds and the same test items; a table, a figure and a report page
(``reports/sweeps/<name>/``), also attached to the sweep's parent run.

Statistics: :mod:`ss3d.eval.seeds`. Two kinds of numbers are compared:

* **headline metrics** (``headline.*`` of each child's stage runs, copied onto the child run:
  held-out mask IoU, pose acc@30, F@0.05 per set, ...; and ``child.minutes``, the child's wall
  time): mean over seeds with a Student-t interval, and the per-seed paired difference against
  the baseline;
* **per-item metrics** of the evaluation (F@0.05 and F@0.1 of every test item, per set,
  category and learned model; when pre-training is swept, also the pre-trained model, pooled
  over the seen and the zero-shot categories): the paired difference over seeds × items, with
  a seeds-then-items bootstrap interval.

Within every variant, each learned model is also set against the pre-trained model on the same
items and seeds (:func:`against_pretrained`), aligned and, where the rows have it, in the
prior's frame: "does self-training help" over seeds, next to "does the variant help".
"""

from __future__ import annotations

import html
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.tracking import MlflowClient

from ss3d import tracking
from ss3d.eval.keys import ModelKey
from ss3d.eval.seeds import (
    paired_item_difference,
    paired_seed_difference,
    seed_interval,
    verdict,
)
from ss3d.eval.stats import Interval
from ss3d.files import inside, replacing_dir
from ss3d.report import html_table
from ss3d.sweep import (
    SweepSpec,
    children,
    find_parent,
    finished_child,
    stage_runs,
    upstream_runs,
)

__all__ = ["ChildResult", "SweepSummary", "against_pretrained", "against_pretrained_rows",
           "aggregate", "collect", "write_sweep_report"]

#: Per-item metrics compared across variants (higher is better for all); the frame check's
#: other reading of a model with a frame from its poses (``_prior_frame`` when the rows are
#: scored aligned, ``_aligned`` when in the prior's frame) only where a row has it.
ITEM_METRICS = ("fscore@0.05", "fscore@0.1", "fscore@0.05_prior_frame", "fscore@0.05_aligned")
#: Within each variant, a learned model's metric against the pre-trained model's on the same
#: item: (learned model's metric, pre-trained model's metric). The pre-trained model is never
#: aligned, so its F@0.05 is its prior-frame reading too.
AGAINST_PRETRAINED = (("fscore@0.05", "fscore@0.05"), ("fscore@0.05_prior_frame", "fscore@0.05"),
                      ("fscore@0.05_aligned", "fscore@0.05"))
#: The child's wall time (its notebooks), a headline row of its own so that a variant's cost
#: stands beside its scores (a capacity sweep reads quality against minutes).
MINUTES = "child.minutes"
#: Headline metrics where lower is better.
LOWER_IS_BETTER: frozenset[str] = frozenset({MINUTES})


@dataclass
class ChildResult:
    """The numbers of one finished child: its headline metrics and its evaluation's rows."""

    variant: str
    seed: int
    run_id: str
    headline: dict[str, float]
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = math.nan  # wall time of the child (its notebooks)
    finished: str = ""  # when it finished (UTC, ISO)
    commit: str = ""  # git commit its stage runs ran


@dataclass
class SweepSummary:
    """The aggregate (plain dicts, as ``sweep.json`` holds them)."""

    name: str
    baseline: str
    variants: list[str]
    seeds: list[int]
    headline: list[dict[str, Any]]  # per metric and variant
    differences: list[dict[str, Any]]  # per metric and non-baseline variant
    missing: list[str]  # children without a finished run
    provenance: dict[str, Any] = field(default_factory=dict)
    against_pretrained: list[dict[str, Any]] = field(default_factory=list)  # per variant

    def to_json(self) -> dict[str, Any]:
        return self.__dict__


def collect(spec: SweepSpec) -> tuple[list[ChildResult], list[str]]:
    """The finished children of the sweep's current parent, and the labels of those missing."""
    upstream = upstream_runs(spec)
    parent = find_parent(spec, upstream)
    results: list[ChildResult] = []
    missing: list[str] = []
    for child in children(spec, upstream):
        run = finished_child(parent, child) if parent is not None else None
        if run is None:
            missing.append(child.label)
            continue
        rows: list[dict[str, Any]] = []
        commit = ""
        for stage_run in stage_runs(run.info.run_id, run.info.experiment_id):
            commit = commit or stage_run.data.tags.get(tracking.TAG_COMMIT, "")
            if stage_run.data.tags.get(tracking.TAG_STAGE) == "evaluate" and not rows:
                path = tracking.artifact_path(stage_run, "evaluation.json")
                rows = json.loads(path.read_text()).get("rows", [])
        end = run.info.end_time or run.info.start_time
        results.append(ChildResult(
            child.variant, child.seed, run.info.run_id, dict(run.data.metrics), rows,
            (end - run.info.start_time) / 1000,
            datetime.fromtimestamp(end / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC"),
            commit))
    return results, missing


def _interval_dict(ci: Interval) -> dict[str, float]:
    return {"mean": ci.estimate, "lo": ci.low, "hi": ci.high, "n": ci.n}


def aggregate(spec: SweepSpec, results: list[ChildResult], missing: list[str] | None = None
              ) -> SweepSummary:
    """Means over seeds and paired differences against ``spec.baseline`` (see the module)."""
    variants = list(spec.variants)
    by_variant: dict[str, dict[int, ChildResult]] = defaultdict(dict)
    for r in results:
        by_variant[r.variant][r.seed] = r
    scores = {id(r): {**r.headline, **({MINUTES: r.seconds / 60} if math.isfinite(r.seconds)
                                       else {})} for r in results}
    metrics = sorted({k for r in results for k in scores[id(r)]})
    headline, differences = [], []
    for metric in metrics:
        values = {v: {s: scores[id(r)][metric] for s, r in by_variant[v].items()
                      if metric in scores[id(r)]} for v in variants}
        higher = metric not in LOWER_IS_BETTER
        for v in variants:
            headline.append({"metric": metric, "variant": v, "per_seed": values[v],
                             **_interval_dict(seed_interval(list(values[v].values())))})
            if v != spec.baseline:
                diff = paired_seed_difference(values[v], values[spec.baseline])
                differences.append({"metric": metric, "kind": "per seed", "variant": v,
                                    **_interval_dict(diff),
                                    "verdict": verdict(diff, higher, seeds=diff.n)})
    pretrain_swept = "pretrain" in spec.stages
    heldout = frozenset(spec.base().data.heldout_categories) if pretrain_swept else frozenset()
    for group, metric, matrix_of in _item_groups(by_variant, variants, pretrain_swept, heldout):
        base = matrix_of(spec.baseline)
        for v in variants:
            table = matrix_of(v)
            if table is None:
                continue
            per_seed = {s: float(np.nanmean(row)) for s, row in table.items()}
            headline.append({"metric": f"{group}.{metric}", "variant": v, "per_seed": per_seed,
                             **_interval_dict(seed_interval(list(per_seed.values())))})
            if v == spec.baseline or base is None:
                continue
            seeds = sorted(set(table) & set(base))
            if not seeds:
                continue
            diff = paired_item_difference(np.stack([table[s] - base[s] for s in seeds]))
            differences.append({"metric": f"{group}.{metric}", "kind": "per item",
                                "variant": v, **_interval_dict(diff), "seeds": len(seeds),
                                "verdict": verdict(diff, True, seeds=len(seeds))})
    provenance = {"commits": sorted({r.commit[:7] for r in results if r.commit}),
                  "children": len(results),
                  "child_minutes": sum(r.seconds for r in results if math.isfinite(r.seconds))
                  / 60,
                  "last_finished": max((r.finished for r in results), default="")}
    return SweepSummary(spec.name, spec.baseline, variants, list(spec.seeds), headline,
                        differences, list(missing or []), provenance,
                        against_pretrained(by_variant, variants))


def against_pretrained(by_variant: dict[str, dict[int, ChildResult]], variants: list[str]
                       ) -> list[dict[str, Any]]:
    """Per variant and (set/category/model, metric) of :data:`AGAINST_PRETRAINED`: the learned
    model minus the pre-trained model of the same child on the same test item, over seeds ×
    the items every seed of the variant shares (seeds-then-items bootstrap, as the per-item
    differences between variants).

    Entry keys: ``metric`` (``group.metric``), ``variant``, ``mean`` / ``lo`` / ``hi`` / ``n``,
    ``seeds``, ``verdict``.
    """
    out: list[dict[str, Any]] = []
    for v in variants:
        # (group, metric) -> seed -> item -> learned minus pre-trained
        cells: dict[tuple[str, str], dict[int, dict[str, float]]] = defaultdict(dict)
        for seed, r in sorted(by_variant[v].items()):
            reference = {(row["set"], row["category"], row["item"]): row for row in r.rows
                         if ModelKey.parse(row["model"]).kind == "pretrained"}
            for row in r.rows:
                if ModelKey.parse(row["model"]).kind in ("baseline", "pretrained"):
                    continue
                ref = reference.get((row["set"], row["category"], row["item"]))
                if ref is None:
                    continue
                group = f"{row['set']}/{row['category']}/{row['model']}"
                for metric, ref_metric in AGAINST_PRETRAINED:
                    if row.get(metric) is None or ref.get(ref_metric) is None:
                        continue
                    cells[(group, metric)].setdefault(seed, {})[row["item"]] = \
                        float(row[metric]) - float(ref[ref_metric])
        for (group, metric), per_seed in sorted(cells.items()):
            items = sorted(set.intersection(*(set(d) for d in per_seed.values())))
            if not items:
                continue
            seeds = sorted(per_seed)
            diff = paired_item_difference(np.array([[per_seed[s][i] for i in items]
                                                    for s in seeds]))
            out.append({"metric": f"{group}.{metric}", "variant": v, **_interval_dict(diff),
                        "seeds": len(seeds), "verdict": verdict(diff, True, seeds=len(seeds))})
    return out


def _item_groups(by_variant: dict[str, dict[int, ChildResult]], variants: list[str],
                 pretrain_swept: bool = False, heldout: frozenset[str] = frozenset()):
    """Per (set/category/model, metric): a function variant -> {seed: values over the items
    every child shares} (None when the variant has no such rows).

    The pre-trained model's rows count only when the sweep re-runs pre-training (else they are
    the same in every child); the baselines never do. When it does, the synthetic items are also
    pooled over the seen categories (``synthetic/seen/...``) and over the zero-shot ones
    (``synthetic/zero-shot/...``, the ``heldout`` categories): a capacity sweep reads those."""
    skipped = ("baseline",) if pretrain_swept else ("baseline", "pretrained")
    cells: dict[tuple[str, str], dict[str, dict[int, dict[str, float]]]] = defaultdict(
        lambda: defaultdict(dict))
    for v in variants:
        for seed, r in by_variant[v].items():
            for row in r.rows:
                if ModelKey.parse(row["model"]).kind in skipped:
                    continue
                targets = [(f"{row['set']}/{row['category']}/{row['model']}", row["item"])]
                if pretrain_swept and row["set"] == "synthetic":
                    pool = "zero-shot" if row["category"] in heldout else "seen"
                    targets.append((f"synthetic/{pool}/{row['model']}",
                                    f"{row['category']}/{row['item']}"))
                for metric in ITEM_METRICS:
                    value = row.get(metric)
                    if value is None:
                        continue
                    for group, item in targets:
                        cells[(group, metric)][v].setdefault(seed, {})[item] = value
    for (group, metric), per_variant in sorted(cells.items()):
        items = sorted(set.intersection(*(set(d) for seeds in per_variant.values()
                                          for d in seeds.values())))
        if not items:
            continue

        def matrix_of(v: str, per_variant=per_variant, items=items
                      ) -> dict[int, np.ndarray] | None:
            if v not in per_variant:
                return None
            return {s: np.array([d[i] for i in items], dtype=float)
                    for s, d in per_variant[v].items()}
        yield group, metric, matrix_of


# ----------------------------------------------------------------------------------------------
# Tables, figure, report
# ----------------------------------------------------------------------------------------------
def _num(x: float, digits: int = 3) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _ci(entry: dict[str, Any]) -> str:
    if not math.isfinite(entry["lo"]):
        return _num(entry["mean"])
    return f"{_num(entry['mean'])} [{_num(entry['lo'])}, {_num(entry['hi'])}]"


def table_rows(summary: SweepSummary) -> tuple[list[str], list[list[str]]]:
    """One row per metric: each variant's mean [95% interval over seeds] and, per other
    variant, its paired difference with the baseline and the verdict."""
    header = ["metric", *[f"{v} (n)" for v in summary.variants],
              *[f"{v} − {summary.baseline}" for v in summary.variants
                if v != summary.baseline]]
    cells = {(h["metric"], h["variant"]): h for h in summary.headline}
    diffs = {(d["metric"], d["variant"]): d for d in summary.differences}
    rows = []
    shown = [m for m in dict.fromkeys(h["metric"] for h in summary.headline)
             if m not in _repeated_headlines(summary)]
    for metric in shown:
        row = [metric]
        for v in summary.variants:
            h = cells.get((metric, v))
            row.append(f"{_ci(h)} ({h['n']})" if h and h["n"] else "–")
        for v in summary.variants:
            if v == summary.baseline:
                continue
            d = diffs.get((metric, v))
            row.append(f"{_ci(d)} {d['verdict']}" if d else "–")
        rows.append(row)
    return header, rows


def _repeated_headlines(summary: SweepSummary) -> set[str]:
    """Headline rows that repeat a per-item row: ``evaluate.<set>.<kind>.fscore_0.05`` is the
    mean over the set's categories of that kind's F@0.05, so where one category has a row
    ``<set>/<category>/<model>.fscore@0.05`` both compare the same numbers, paired by seed only
    in the first and by seed and item in the second (the one kept)."""
    metrics = {h["metric"] for h in summary.headline}
    per_item = defaultdict(int)
    for found in filter(None, (re.fullmatch(r"(\w+)/([\w-]+)/(.+)\.fscore@0\.05", m)
                               for m in metrics)):
        if found.group(2) not in ("seen", "zero-shot"):
            per_item[(found.group(1), found.group(3).split("-")[0])] += 1
    return {m for m in metrics if (found := re.fullmatch(r"evaluate\.(\w+)\.(\w+)\.fscore_0\.05",
                                                          m)) and per_item[found.groups()] == 1}


def against_pretrained_rows(summary: SweepSummary) -> tuple[list[str], list[list[str]]]:
    """One row per learned model and metric: in each variant, its paired difference with the
    pre-trained model [95% interval over seeds × items] and the verdict."""
    header = ["learned model − pre-trained", *summary.variants]
    cells = {(e["metric"], e["variant"]): e for e in summary.against_pretrained}
    rows = []
    for metric in dict.fromkeys(e["metric"] for e in summary.against_pretrained):
        rows.append([metric, *(f"{_ci(cells[(metric, v)])} {cells[(metric, v)]['verdict']}"
                               if (metric, v) in cells else "–" for v in summary.variants)])
    return header, rows


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_table(summary: SweepSummary) -> str:
    return _markdown(*table_rows(summary))


def seeds_figure(summary: SweepSummary, metrics: list[str] | None = None):
    """Per metric: every seed's value (dots) and the mean with its interval, per variant."""
    import matplotlib.pyplot as plt

    metrics = metrics or list(dict.fromkeys(h["metric"] for h in summary.headline))[:8]
    cols = min(4, max(1, len(metrics)))
    rows = math.ceil(len(metrics) / cols) if metrics else 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.9 * rows), squeeze=False)
    cells = {(h["metric"], h["variant"]): h for h in summary.headline}
    for ax, metric in zip(axes.flat, metrics, strict=False):
        for x, v in enumerate(summary.variants):
            h = cells.get((metric, v))
            if not h:
                continue
            ys = list(h["per_seed"].values())
            ax.scatter([x + 0.12] * len(ys), ys, s=12, color="0.45", zorder=3)
            if math.isfinite(h["lo"]):
                ax.errorbar([x - 0.08], [h["mean"]], yerr=[[h["mean"] - h["lo"]],
                            [h["hi"] - h["mean"]]], fmt="o", color="C0", capsize=3)
            else:
                ax.plot([x - 0.08], [h["mean"]], "o", color="C0")
        ax.set_xticks(range(len(summary.variants)), summary.variants, rotation=20, fontsize=8)
        ax.set_title(metric, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle(f"sweep {summary.name}: mean and 95% interval over seeds (blue), each seed "
                 "(grey)", fontsize=9)
    fig.tight_layout()
    return fig


def write_sweep_report(spec: SweepSpec, summary: SweepSummary, out_dir: str | Path | None = None,
                       log_to_parent: bool = True) -> Path:
    """``reports/sweeps/<name>/`` (or ``out_dir``): README.md, index.html, sweep.json and
    seeds.png, written whole or not at all; also attached to the parent run. Returns the
    folder."""
    import matplotlib.pyplot as plt

    final = Path(out_dir) if out_dir else inside(tracking.repo_root() / "reports" / "sweeps",
                                                 spec.name)
    with replacing_dir(final) as tmp:
        fig = seeds_figure(summary)
        fig.savefig(tmp / "seeds.png", dpi=110)
        plt.close(fig)
        (tmp / "sweep.json").write_text(json.dumps(summary.to_json(), indent=1, default=float))
        (tmp / "README.md").write_text(_readme(spec, summary), encoding="utf-8")
        header, rows = table_rows(summary)
        (tmp / "index.html").write_text(_html(spec, summary, header, rows), encoding="utf-8")
    if log_to_parent:
        parent = find_parent(spec, upstream_runs(spec))
        if parent is not None:
            client = MlflowClient(tracking.tracking_uri())
            for name in ("README.md", "index.html", "sweep.json", "seeds.png"):
                client.log_artifact(parent.info.run_id, str(final / name), "sweep")
    return final


def _lines(spec: SweepSpec, summary: SweepSummary) -> list[str]:
    overrides = "; ".join(f"**{v}**: " + (", ".join(f"`{k}={val}`" for k, val in o.items())
                                          or "the base settings")
                          for v, o in spec.variants.items())
    common = ", ".join(f"`{k}={v}`" for k, v in spec.common.items()) or "none"
    lines = [f"Base experiment `{spec.experiment.name}`; stages {' → '.join(spec.stages)}; "
             f"seeds {', '.join(map(str, spec.seeds))}; baseline **{spec.baseline}**.",
             f"Variants: {overrides}. Set in every variant: {common}."]
    p = summary.provenance
    if p.get("children"):
        lines.append(f"{p['children']} children ran {p['child_minutes']:.1f} min in all (their "
                     f"notebooks), the last finished {p['last_finished']}, at commit "
                     f"{', '.join(p['commits']) or 'unknown'}.")
    if summary.missing:
        lines.append(f"**Not finished (left out): {', '.join(summary.missing)}.**")
    return lines


def _readme(spec: SweepSpec, summary: SweepSummary) -> str:
    return "\n".join([
        f"# Sweep `{spec.name}`", "", spec.description, "", *_lines(spec, summary), "",
        "Each cell: mean over seeds [95% Student-t interval] (seeds). Differences: the "
        "headline rows (`stage run.metric`) are paired by seed, and their interval knows "
        "only how the seeds vary; the `set/category/model.metric` rows are paired by seed "
        "and test item (seeds-then-items bootstrap), and also know how the test items vary: "
        "where a metric has both, read the latter. A verdict needs the interval to exclude "
        "0; one seed is a lead, never a verdict.", "",
        markdown_table(summary), "", *_against_pretrained_markdown(summary),
        "![every seed](seeds.png)", "",
        f"Re-run: `ss3d sweep {_repo_relative(spec.path)}` (finished children are skipped).",
        ""])


AGAINST_PRETRAINED_TEXT = (
    "Within each variant, each learned model against the pre-trained model on the same test "
    "items and seeds (paired; seeds-then-items bootstrap). The evaluation's frame check reads "
    "a model with a frame from its poses both ways: `_prior_frame`, as it stands (the frame "
    "the pre-trained model is read in); `_aligned`, turned by the frame its chosen poses give; "
    "the plain metric is whichever of the two the evaluation scored in "
    "(`evaluate.learned_frame`). Where the readings disagree, the score rests on the frame, "
    "not on the shape.")


def _against_pretrained_markdown(summary: SweepSummary) -> list[str]:
    if not summary.against_pretrained:
        return []
    return ["## Against the pre-trained model", "", AGAINST_PRETRAINED_TEXT, "",
            _markdown(*against_pretrained_rows(summary)), ""]


def _repo_relative(path: Path) -> str:
    try:
        return str(path.relative_to(tracking.repo_root()))
    except ValueError:
        return str(path)


def _inline(text: str) -> str:
    """Escaped HTML of a Markdown line: `code` and **bold** rendered, not printed."""
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def _html(spec: SweepSpec, summary: SweepSummary, header: list[str], rows: list[list[str]]
          ) -> str:
    paragraphs = "".join(f"<p>{_inline(line)}</p>"
                         for line in [spec.description, *_lines(spec, summary)] if line)
    table = html_table(header, [[html.escape(c) for c in row] for row in rows])
    if summary.against_pretrained:
        ap_header, ap_rows = against_pretrained_rows(summary)
        table += (f"<h2>Against the pre-trained model</h2><p>{_inline(AGAINST_PRETRAINED_TEXT)}"
                  "</p>" + html_table(ap_header, [[html.escape(c) for c in row]
                                                  for row in ap_rows]))
    return (f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' "
            "content='width=device-width, initial-scale=1'><title>sweep "
            f"{html.escape(spec.name)}</title><style>body{{font-family:system-ui,sans-serif;"
            "max-width:1100px;margin:1.5em auto;padding:0 1em;line-height:1.35}"
            "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
            "padding:3px 6px}.scroll{overflow-x:auto;max-width:100%}img{max-width:100%;"
            "height:auto}code{background:#f3f3f3;padding:1px 3px}"
            "@media (max-width:600px){body{padding:0 .6em;margin-top:.6em}}</style></head><body>"
            f"<h1>Sweep {html.escape(spec.name)}</h1>{paragraphs}{table}"
            "<p><img src='seeds.png' style='max-width:100%'></p>"
            f"<p>Re-run: <code>ss3d sweep {html.escape(_repo_relative(spec.path))}</code></p>"
            "</body></html>\n")
