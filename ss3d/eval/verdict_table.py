"""The verdict table a report leads with: a few rows, each one question the run answers, with
the measure, its 95% interval and the verdict the interval allows.

Rows (where the evaluation has what they need):

* **zero-shot**: the pre-trained model against the sphere on the categories it never saw
  (pooled over their items, paired);
* **self-training**, per collection: the self-trained model against the pre-trained one;
* **poses**, per self-trained collection: accuracy@30 of the chosen poses and of the best of
  the H hypotheses (Wilson intervals);
* **distillation**: the student against the teacher it learned each category from (pooled
  over the synthetic categories taught by the pre-trained model; per collection otherwise);
* **input-view fidelity**: every metric whose name holds ``input`` (e.g. an input-view mask
  IoU), the distilled model against the pre-trained one.

Pooled intervals come from the evaluation's per-item ``rows`` (paired bootstrap over items);
without rows, a row falls back to the stored per-category differences where there is one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ss3d.eval.keys import ModelKey
from ss3d.eval.stats import Interval, bootstrap_ci, paired_bootstrap_diff
from ss3d.eval.summary import PRETRAINED, PRIMARY, interval_of, pose_interval

__all__ = ["Verdict", "input_metrics", "verdict_rows"]

SPHERE = ModelKey.baseline("sphere").label


@dataclass(frozen=True)
class Verdict:
    """One row: ``question`` (what is compared), ``measure`` (on what), ``result`` (numbers
    with intervals), ``verdict`` (words) and ``tone`` (``good``, ``bad`` or ``""``)."""

    question: str
    measure: str
    result: str
    verdict: str
    tone: str = ""


def _signed(ci: Interval, digits: int = 3) -> str:
    def num(x: float) -> str:
        return "–" if not math.isfinite(x) else f"{x:+.{digits}f}"
    return f"{num(ci.estimate)} [{num(ci.low)}, {num(ci.high)}]"


def _word(ci: Interval, better: str, worse: str, level: str) -> tuple[str, str]:
    if ci.n < 2 or not ci.is_defined:
        return f"too few items (n={ci.n})", ""
    if ci.low > 0:
        return better, "good"
    if ci.high < 0:
        return worse, "bad"
    return level, ""


def _paired(rows: list[dict[str, Any]], model: str, reference: str, metric: str,
            groups: set[tuple[str, str]]) -> Interval | None:
    """``model`` minus ``reference`` on the items of ``groups`` ((set, category)), pooled."""
    values: dict[tuple[str, str, str, str], float] = {}
    for r in rows:
        if (r["set"], r["category"]) in groups and metric in r and r[metric] is not None:
            values[(r["set"], r["category"], str(r["item"]), r["model"])] = float(r[metric])
    pairs = [(v, values[(s, c, i, reference)]) for (s, c, i, m), v in values.items()
             if m == model and (s, c, i, reference) in values]
    if not pairs:
        return None
    a, b = np.asarray(pairs, dtype=float).T
    return paired_bootstrap_diff(a, b, seed=0)


def _pooled(rows: list[dict[str, Any]], model: str, metric: str) -> Interval | None:
    values = [float(r[metric]) for r in rows if r["model"] == model and r.get(metric) is not None]
    return bootstrap_ci(np.asarray(values, dtype=float), seed=0) if values else None


def _stored(entries: list[dict[str, Any]], metric: str, **where: str) -> Interval | None:
    found = [e for e in entries if all(e.get(k) == v for k, v in where.items())]
    return interval_of(found[0], metric) if len(found) == 1 and metric in found[0] else None


def input_metrics(data: dict[str, Any]) -> list[str]:
    """Metric names holding ``input`` (input-view fidelity) in the summary or the rows."""
    keys = [k for entry in [*data.get("summary", []), *data.get("rows", [])[:200]] for k in entry
            if "input" in k and not k.endswith(("_lo", "_hi", "_n"))
            and isinstance(entry[k], (int, float)) and not isinstance(entry[k], bool)]
    return list(dict.fromkeys(keys))


def _label(metric: str) -> str:
    return {"fscore@0.05": "F@0.05", "fscore@0.1": "F@0.1"}.get(metric, metric)


def verdict_rows(data: dict[str, Any]) -> list[Verdict]:
    """The verdict table of one evaluation (``evaluation.json`` as a dict)."""
    rows, summary = data.get("rows") or [], data.get("summary", [])
    out: list[Verdict] = []
    # -- zero-shot: the pre-trained model against the sphere on the unseen categories
    zero = sorted({(s["set"], s["category"]) for s in summary if s.get("zero_shot")})
    if zero:
        ci = _paired(rows, PRETRAINED, SPHERE, PRIMARY, set(zero)) or (_stored(
            data.get("baseline_differences", []), PRIMARY, set=zero[0][0],
            category=zero[0][1], model=PRETRAINED, reference=SPHERE) if len(zero) == 1 else None)
        if ci is not None:
            word, tone = _word(ci, "beats the sphere", "below the sphere",
                               "not separable from the sphere")
            out.append(Verdict(f"Zero-shot: {', '.join(c for _, c in zero)}",
                               f"Δ{_label(PRIMARY)} vs sphere, n={ci.n}",
                               _signed(ci), word, tone))
    # -- self-training per collection, against the pre-trained model
    collections = list(dict.fromkeys(s["category"] for s in summary if s["set"] == "collection"))
    for category in collections:
        model = ModelKey.selftrained(category).label
        ci = _paired(rows, model, PRETRAINED, PRIMARY, {("collection", category)}) or _stored(
            data.get("differences", []), PRIMARY, set="collection", category=category,
            model=model)
        if ci is not None:
            word, tone = _word(ci, "helps", "hurts", "no measurable change")
            out.append(Verdict(f"Self-training, {category}",
                               f"Δ{_label(PRIMARY)} vs pre-trained, n={ci.n}",
                               _signed(ci), word, tone))
    out += _pose_rows(data.get("poses", []))
    out += _distill_rows(data, rows)
    for metric in input_metrics(data):
        out += _input_row(data, rows, metric)
    return out


def _pose_rows(poses: list[dict[str, Any]]) -> list[Verdict]:
    out = []
    for p in poses:
        if "(ablation)" in str(p.get("run", "")) or p.get("pose_acc30") is None:
            continue
        chosen = pose_interval(p, "pose_acc30")
        best = pose_interval(p, "pose_best_of_h_acc30")
        h = p.get("hypotheses") or "H"
        result = f"chosen {chosen.fmt(2)}; best of {h} {best.fmt(2)}"
        if chosen.is_defined and best.is_defined and chosen.high < best.low:
            word, tone = "selection misses good poses", "bad"
        elif chosen.is_defined and best.is_defined:
            word, tone = "selection keeps the good poses", "good"
        else:
            word, tone = "no interval", ""
        out.append(Verdict(f"Poses, {p['category']}", "acc@30°, Wilson", result, word, tone))
    return out


def _distill_rows(data: dict[str, Any], rows: list[dict[str, Any]]) -> list[Verdict]:
    """The student against its teacher: F@0.1 (the measure of the ratio aim), pooled over the
    categories one teacher taught."""
    ratios = data.get("ratios", [])
    by_teacher: dict[str, list[dict[str, Any]]] = {}
    for r in ratios:
        by_teacher.setdefault(r["teacher"], []).append(r)
    student = ModelKey("distilled").label
    out = []
    for teacher, entries in by_teacher.items():
        groups = {(r["set"], r["category"]) for r in entries}
        ci = _paired(rows, student, teacher, "fscore@0.1", groups)
        if ci is None and teacher == PRETRAINED and len(entries) == 1:
            ci = _stored(data.get("differences", []), "fscore@0.1", set=entries[0]["set"],
                         category=entries[0]["category"], model=student)
        if ci is None:
            continue
        below = [r for r in entries if r.get("ratio", 1.0) < 0.95]
        where = (f"{len(groups)} synthetic categories" if teacher == PRETRAINED and len(groups) > 1
                 else ", ".join(sorted(c if s == "collection" else f"{s} {c}"
                                       for s, c in groups)))
        word, tone = _word(ci, "beats its teacher", "below its teacher", "matches its teacher")
        ratio_note = f"; ratio < 0.95 in {len(below)} of {len(entries)}" if below else ""
        out.append(Verdict(f"Distillation, {where}", f"ΔF@0.1 vs {teacher}, n={ci.n}",
                           _signed(ci) + ratio_note, word, tone))
    return out


def _input_row(data: dict[str, Any], rows: list[dict[str, Any]], metric: str) -> list[Verdict]:
    student = ModelKey("distilled").label
    if rows:
        groups = {(r["set"], r["category"]) for r in rows}
        levels = [(m, _pooled(rows, m, metric)) for m in (PRETRAINED, student)]
        diff = _paired(rows, student, PRETRAINED, metric, groups)
    else:  # the summary's means, averaged over categories (no interval)
        levels, diff = [], None
        for m in (PRETRAINED, student):
            vals = [s[metric] for s in data.get("summary", []) if s["model"] == m and metric in s]
            levels.append((m, Interval.empty(len(vals), float(np.mean(vals))) if vals else None))
    shown = "; ".join(f"{m} {ci.fmt(3)}" for m, ci in levels if ci is not None)
    if not shown:
        return []
    if diff is not None:
        word, tone = _word(diff, "distilled fits it better", "distilled fits it worse",
                           "distilled fits it as well")
        shown += f"; Δ {_signed(diff)}"
    else:
        word, tone = "no paired interval", ""
    return [Verdict("Input-view fidelity", f"{metric}, all items", shown, word, tone)]
