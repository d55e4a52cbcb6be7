"""The evaluation's summary: statistics per (set, category, model), paired differences,
verdicts, and the tables and sentences the stage, ``tables.md`` and the report print.

Built on the intervals of :mod:`ss3d.eval.stats` (bootstrap, paired bootstrap, Wilson). Rows and
summary entries are plain dicts (what ``evaluation.json`` holds): ``set``, ``category``,
``model`` (a :class:`~ss3d.eval.keys.ModelKey` label), ``item`` and the metrics of
:data:`METRICS`; a summary entry holds, per metric ``m``, ``m`` (mean), ``m_lo`` and ``m_hi``.
Nothing here needs torch or a trained model: the report reads a finished evaluation with it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from ss3d.eval.keys import ModelKey
from ss3d.eval.stats import Interval, bootstrap_ci, paired_bootstrap_diff, wilson_interval

__all__ = ["ALIGNED", "DIFF_METRICS", "FRAME_CHECK_METRICS", "METRICS", "PRETRAINED", "PRIMARY",
           "PRIOR_FRAME", "Table", "baseline_differences", "fmt", "fmt_ci", "frame_checks",
           "half_widths", "interval_of", "is_baseline", "markdown_tables", "paired_differences",
           "pose_interval", "summarise", "tables", "verdicts"]

METRICS = ("fscore@0.02", "fscore@0.05", "fscore@0.1", "chamfer_l1", "chamfer_l2", "vol_iou",
           "mask_iou", "psnr", "colour_spread", "input_mask_iou", "input_psnr")
#: Paired differences (model minus the pre-trained model, same items) are reported for these.
DIFF_METRICS = ("fscore@0.05", "fscore@0.1", "chamfer_l1")
#: The metric that verdicts ("beats the medoid") and paired differences are read on.
PRIMARY = "fscore@0.05"
#: The reference of the paired differences: the pre-trained model's label.
PRETRAINED = ModelKey("pretrained").label
#: The frame check (:func:`frame_checks`): a model with a frame from its poses is scored in
#: both frames on these metrics; the reading that is not the row's own metric is stored as
#: ``<metric>_prior_frame`` (rows scored aligned, ``evaluate.learned_frame: poses``) or
#: ``<metric>_aligned`` (rows scored in the prior's frame, the default).
FRAME_CHECK_METRICS = ("fscore@0.05", "fscore@0.1")
PRIOR_FRAME = "_prior_frame"
ALIGNED = "_aligned"


def is_baseline(label: str) -> bool:
    """Whether the row label names a baseline (``baseline: sphere``, ...)."""
    return ModelKey.parse(label).is_baseline


def summarise(rows: list[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """Mean and 95% bootstrap interval of every metric per (set, category, model).

    Each entry holds ``n`` (items) and, per metric ``m``, ``m`` (mean), ``m_lo`` and ``m_hi``
    (percentile bootstrap over items; NaN bounds for fewer than two items).
    """
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["set"], r["category"], r["model"])].append(r)
    out = []
    for (set_, category, model), rs in groups.items():
        entry: dict[str, Any] = {"set": set_, "category": category, "model": model,
                                 "n": len(rs), "zero_shot": rs[0].get("zero_shot", False)}
        for m in METRICS:
            values = [r[m] for r in rs if m in r]
            if values:
                ci = bootstrap_ci(np.asarray(values, dtype=float), seed=seed)
                entry.update({m: ci.estimate, f"{m}_lo": ci.low, f"{m}_hi": ci.high})
        out.append(entry)
    return out


def interval_of(entry: dict[str, Any], metric: str) -> Interval:
    """The interval of ``metric`` stored in a summary or difference entry."""
    est = entry.get(metric)
    if est is None:
        return Interval.empty()
    return Interval(float(est), float(entry.get(f"{metric}_lo", math.nan)),
                    float(entry.get(f"{metric}_hi", math.nan)), int(entry.get("n", 0)))


def paired_differences(rows: list[dict[str, Any]], reference: str = PRETRAINED,
                       metrics: tuple[str, ...] = DIFF_METRICS, seed: int = 0
                       ) -> list[dict[str, Any]]:
    """Each trained model minus ``reference`` on the same items, with paired bootstrap intervals.

    Returns one entry per (set, category, model): ``n`` (shared items) and, per metric ``m``,
    ``m`` (mean difference), ``m_lo``, ``m_hi``. Pairing removes the per-item difficulty that
    both models share, so these intervals are much narrower than the two models' own.
    """
    by_item: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        by_item[(r["set"], r["category"], r["model"])][r["item"]] = r
    out = []
    for (set_, category, model), items in by_item.items():
        if model == reference or is_baseline(model):
            continue
        ref = by_item.get((set_, category, reference))
        if not ref:
            continue
        shared = [k for k in items if k in ref]
        entry: dict[str, Any] = {"set": set_, "category": category, "model": model,
                                 "reference": reference, "n": len(shared)}
        for m in metrics:
            pairs = [(items[k][m], ref[k][m]) for k in shared if m in items[k] and m in ref[k]]
            if pairs:
                a, b = np.asarray(pairs, dtype=float).T
                ci = paired_bootstrap_diff(a, b, seed=seed)
                entry.update({m: ci.estimate, f"{m}_lo": ci.low, f"{m}_hi": ci.high})
        out.append(entry)
    return out


def frame_checks(rows: list[dict[str, Any]], metric: str = PRIMARY, seed: int = 0
                 ) -> list[dict[str, Any]]:
    """Per (set, category, model) with a frame from its poses: ``metric`` read aligned by that
    frame and read in the pre-trained prior's frame, each minus the pre-trained model on the
    same items (paired), and the frame's turn about the up axis. Whichever reading a row's own
    ``metric`` is (``evaluate.learned_frame``), the other is ``<metric>_prior_frame`` or
    ``<metric>_aligned``.

    Entry keys: ``n``, ``turn_deg``, ``aligned`` / ``prior_frame`` (means, with ``_lo`` /
    ``_hi``), ``aligned_diff`` / ``prior_frame_diff`` (paired differences, ``n_paired``).
    Where the two readings disagree, the model's score rests on its frame, not on its shape.
    """
    prior_key, aligned_key = f"{metric}{PRIOR_FRAME}", f"{metric}{ALIGNED}"
    checked = [r for r in rows if metric in r and (prior_key in r or aligned_key in r)]
    reference = [r for r in rows if r["model"] == PRETRAINED and metric in r]
    # each reading as if it were the metric: the same summaries and pairings serve
    readings = {"aligned": [{**r, metric: r.get(aligned_key, r[metric])} for r in checked],
                "prior_frame": [{**r, metric: r.get(prior_key, r[metric])} for r in checked]}
    means = {name: {(s["set"], s["category"], s["model"]): s for s in summarise(rs, seed)}
             for name, rs in readings.items()}
    diffs = {name: {(d["set"], d["category"], d["model"]): d for d in paired_differences(
                 reference + rs, metrics=(metric,), seed=seed)}
             for name, rs in readings.items()}
    turns = {(r["set"], r["category"], r["model"]): float(r["frame_turn_deg"]) for r in checked}
    scored_in = {(r["set"], r["category"], r["model"]):
                 "prior_frame" if aligned_key in r else "aligned" for r in checked}
    out = []
    for group, summary in means["aligned"].items():
        set_, category, model = group
        paired = diffs["aligned"].get(group)  # both readings pair the same items
        entry: dict[str, Any] = {"set": set_, "category": category, "model": model,
                                 "n": summary["n"], "turn_deg": turns[group],
                                 "scored_in": scored_in[group],
                                 "n_paired": paired["n"] if paired else 0}
        for name in readings:
            mean = means[name][group]
            entry.update({name: mean[metric], f"{name}_lo": mean[f"{metric}_lo"],
                          f"{name}_hi": mean[f"{metric}_hi"]})
            diff = diffs[name].get(group)
            if diff and metric in diff:
                entry.update({f"{name}_diff": diff[metric], f"{name}_diff_lo": diff[f"{metric}_lo"],
                              f"{name}_diff_hi": diff[f"{metric}_hi"]})
        out.append(entry)
    return out


def baseline_differences(rows: list[dict[str, Any]], metric: str = PRIMARY, seed: int = 0
                         ) -> list[dict[str, Any]]:
    """Each learned model minus each baseline on the same items (:func:`paired_differences`
    with the baseline as reference), on ``metric`` only.

    A baseline is scored on exactly the items the models are, so "model A beats the medoid" is
    a paired question; two unpaired intervals that must not overlap ask for far more than 95%
    confidence and miss differences that every item agrees on.
    """
    names = dict.fromkeys(r["model"] for r in rows if is_baseline(r["model"]))
    return [d for name in names
            for d in paired_differences(rows, reference=name, metrics=(metric,), seed=seed)]


def verdicts(summary: list[dict[str, Any]], differences: list[dict[str, Any]],
             metric: str = PRIMARY, against_baselines: list[dict[str, Any]] | None = None
             ) -> list[str]:
    """Plain sentences: per (set, category), which baselines each model beats on ``metric``,
    which beat it, and its paired difference to the pre-trained model.

    With ``against_baselines`` (:func:`baseline_differences`) a model beats a baseline where
    the 95% paired interval of model minus baseline is above 0 (below: under 0); a baseline
    without a paired entry, and every baseline without ``against_baselines``, is compared by
    the two unpaired intervals being clear of each other.
    """
    diff = {(d["set"], d["category"], d["model"]): d for d in differences}
    paired = {(d["set"], d["category"], d["model"], d["reference"]): d
              for d in against_baselines or [] if metric in d}
    lines = []
    for set_, category in dict.fromkeys((s["set"], s["category"]) for s in summary):
        group = [s for s in summary if (s["set"], s["category"]) == (set_, category)]
        bases = [s for s in group if is_baseline(s["model"])]
        for s in group:
            if is_baseline(s["model"]) or metric not in s:
                continue
            mine = interval_of(s, metric)
            beats, below, tied = [], [], []
            for b in bases:
                name = ModelKey.parse(b["model"]).name
                d = paired.get((set_, category, s["model"], b["model"]))
                if d is not None:
                    di = interval_of(d, metric)
                    label = f"{name} (paired Δ {di.fmt(3)})"
                    is_above, is_below = di.low > 0, di.high < 0
                else:
                    label = name
                    theirs = interval_of(b, metric)
                    is_above, is_below = mine.above(theirs), mine.below(theirs)
                (beats if is_above else below if is_below else tied).append(label)
            text = (f"{set_} {category}: {s['model']} {metric} {mine.fmt(2)} (n={s['n']}) "
                    f"beats {', '.join(beats) or 'no baseline'}")
            if below:
                text += f"; below {', '.join(below)}"
            if tied:
                text += f"; not separable from {', '.join(tied)}"
            d = diff.get((set_, category, s["model"]))
            if d is not None and metric in d:
                di = interval_of(d, metric)
                sign = ("above" if di.low > 0 else "below" if di.high < 0 else
                        "not separable from")
                text += f"; {sign} the pre-trained model (paired Δ {di.fmt(3)})"
            lines.append(text + ".")
    return lines


def half_widths(summary: list[dict[str, Any]], poses: list[dict[str, Any]],
                metric: str = PRIMARY) -> dict[str, float]:
    """The largest 95% half-width of ``metric`` per set over the learned models, and of the
    pose accuracy@30 (Wilson) over the self-training runs."""
    out: dict[str, float] = {}
    for s in summary:
        if is_baseline(s["model"]) or metric not in s:
            continue
        hw = interval_of(s, metric).half_width
        if not math.isnan(hw):
            key = f"{s['set']} {metric}"
            out[key] = max(out.get(key, 0.0), hw)
    for p in poses:
        ci = pose_interval(p, "pose_acc30")
        if not math.isnan(ci.half_width):
            out["pose acc@30"] = max(out.get("pose acc@30", 0.0), ci.half_width)
    return out


def pose_interval(pose: dict[str, Any], key: str) -> Interval:
    """Wilson interval of a pose accuracy stored with its image count ``pose_n``."""
    n = pose.get("pose_n")
    if pose.get(key) is None or not n:
        return Interval.empty(estimate=float(pose.get(key, math.nan) or math.nan))
    return wilson_interval(round(float(pose[key]) * int(n)), int(n))


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: ``digits`` decimals, '–' for missing or NaN."""
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def fmt_ci(entry: dict[str, Any], metric: str, digits: int = 3) -> str:
    """``mean [low, high]`` of a summary cell, or just the mean where no interval exists."""
    ci = interval_of(entry, metric)
    if math.isnan(ci.estimate):
        return "–"
    if math.isnan(ci.low):
        return fmt(ci.estimate, digits)
    return ci.fmt(digits)


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    baseline_rows: list[bool]


def tables(summary: list[dict[str, Any]], poses: list[dict[str, Any]],
           ratios: list[dict[str, Any]], differences: list[dict[str, Any]] | None = None,
           frames: list[dict[str, Any]] | None = None) -> list[Table]:
    """The evaluation tables as formatted cells (rendered as Markdown here, HTML in reports).

    Every cell is the mean over items with its 95% bootstrap interval; pose accuracies carry
    Wilson intervals.
    """
    out = []
    for set_, title in (("synthetic", "Held-out synthetic models (input: one render)"),
                        ("collection", "Collection test images (3D ground truth from the "
                                       "hidden models)")):
        entries = [s for s in summary if s["set"] == set_]
        if entries:
            out.append(Table(
                title + " — mean [95% bootstrap interval]",
                ["category", "model", "n", "F@0.02 ↑", "F@0.05 ↑", "F@0.1 ↑", "Chamfer-L1 ↓",
                 "vol IoU ↑", "mask IoU ↑", "PSNR ↑", "colour spread →1", "input-view IoU ↑",
                 "input-view PSNR ↑"],
                [[s["category"] + (" (zero-shot)" if s["zero_shot"] else ""), s["model"],
                  str(s["n"]), fmt_ci(s, "fscore@0.02", 2), fmt_ci(s, "fscore@0.05", 2),
                  fmt_ci(s, "fscore@0.1", 2), fmt_ci(s, "chamfer_l1", 3),
                  fmt_ci(s, "vol_iou", 2), fmt_ci(s, "mask_iou", 2), fmt_ci(s, "psnr", 1),
                  fmt_ci(s, "colour_spread", 2), fmt_ci(s, "input_mask_iou", 2),
                  fmt_ci(s, "input_psnr", 1)]
                 for s in entries],
                [is_baseline(s["model"]) for s in entries]))
    if differences:
        out.append(Table(
            "Paired differences: model minus the pre-trained model on the same items "
            "— mean [95% paired bootstrap interval]",
            ["set", "category", "model", "n", "ΔF@0.05", "ΔF@0.1", "ΔChamfer-L1"],
            [[d["set"], d["category"], d["model"], str(d["n"]), fmt_ci(d, "fscore@0.05", 3),
              fmt_ci(d, "fscore@0.1", 3), fmt_ci(d, "chamfer_l1", 4)] for d in differences],
            [False] * len(differences)))
    if poses:
        out.append(Table(
            "Poses of the self-trained collections (learned frame aligned by a 3D rotation; "
            "'about vertical': by a rotation about the up axis only) — Wilson 95% intervals",
            ["category", "run", "H", "images", "acc@15 ↑", "acc@30 ↑", "acc@30 about vertical ↑",
             "median ° ↓", "best-of-H acc@30", "acc@30 before search", "pose prior's acc@30",
             "mask IoU"],
            [[str(p["category"]), p["run"], str(p["hypotheses"]),
              str(int(p["pose_n"])) if p.get("pose_n") else "–",
              pose_interval(p, "pose_acc15").fmt(2), pose_interval(p, "pose_acc30").fmt(2),
              pose_interval(p, "pose_acc30_vertical").fmt(2),
              fmt(p.get("pose_median_deg"), 1),
              pose_interval(p, "pose_best_of_h_acc30").fmt(2),
              fmt(p.get("initial_pose_acc30"), 2), fmt(p.get("viewpoint_net_acc30"), 2),
              fmt(p.get("mask_iou"))] for p in poses],
            [False] * len(poses)))
    if frames:
        out.append(Table(
            "Frame check: models with a frame from their poses, read aligned by that frame "
            "and in the pre-trained prior's frame (no alignment); 'scored in': the reading the "
            "other tables use (evaluate.learned_frame) — F@0.05 mean [95% bootstrap interval]; "
            "Δ: minus the pre-trained model on the same items [95% paired interval]",
            ["set", "category", "model", "n", "scored in", "frame's turn about vertical °",
             "F@0.05 aligned", "F@0.05 prior's frame", "Δ aligned", "Δ prior's frame"],
            [[f["set"], f["category"], f["model"], str(f["n"]),
              "prior's frame" if f.get("scored_in") == "prior_frame" else "aligned",
              fmt(f["turn_deg"], 0),
              fmt_ci(f, "aligned", 2), fmt_ci(f, "prior_frame", 2),
              fmt_ci(f, "aligned_diff", 3), fmt_ci(f, "prior_frame_diff", 3)]
             for f in frames],
            [False] * len(frames)))
    if ratios:
        out.append(Table(
            "Distilled student vs its teacher (F@0.1, aim ≥ 0.95)",
            ["set", "category", "teacher", "student F@0.1", "teacher F@0.1", "ratio"],
            [[r["set"], r["category"], r["teacher"], fmt(r["student"]),
              fmt(r["teacher_fscore"]), fmt(r["ratio"], 2)] for r in ratios],
            [False] * len(ratios)))
    return out


def markdown_tables(summary: list[dict[str, Any]], poses: list[dict[str, Any]],
                    ratios: list[dict[str, Any]], differences: list[dict[str, Any]] | None = None,
                    verdict_lines: list[str] | None = None,
                    frames: list[dict[str, Any]] | None = None) -> str:
    lines = []
    if verdict_lines:
        lines += ["### What beats what (F@0.05, 95% paired intervals of model minus baseline "
                  "on the same items)", ""]
        lines += [f"* {v}" for v in verdict_lines]
        lines.append("")
    widths = half_widths(summary, poses)
    if widths:
        lines += ["Largest 95% interval half-widths: " + ", ".join(
            f"{k} ±{v:.3f}" for k, v in widths.items()) + ".", ""]
    for t in tables(summary, poses, ratios, differences, frames):
        lines += [f"### {t.title}", "", "| " + " | ".join(t.header) + " |",
                  "|" + "---|" * len(t.header)]
        lines += ["| " + " | ".join(row) + " |" for row in t.rows]
        lines.append("")
    return "\n".join(lines)
