"""Statistics across runs: a setting repeated over seeds, and two settings compared on the same
seeds and test items (what ``ss3d sweep`` reports).

Within one run the evaluation's intervals (:mod:`ss3d.eval.stats`) resample test items; they say
nothing about how much another seed would move the number. Across runs:

* :func:`seed_interval` — mean of one number over seeds, with a Student-t interval
  (``mean ± t(n-1) · sd / √n``): each seed is one independent draw of the whole training;
* :func:`paired_seed_difference` — the same for the per-seed difference ``variant − baseline``
  (same seed on both sides, so what the seed moves in both cancels);
* :func:`paired_item_difference` — the mean difference over seeds *and* test items of a
  per-item metric (``D[s, i]``), with a two-level bootstrap: resample seeds, then items (the
  same items for every seed, which keeps the pairing). With few seeds the seed level is
  coarse (3 seeds give 10 distinct resamples), so read it beside the per-seed values;
* :func:`verdict` — "better", "worse" or "level" from an interval and the metric's direction;
  a single seed is always only "a lead", and a difference equal on every seed (a zero-width
  interval) gets no verdict.

Fewer than two seeds give NaN bounds, never a zero-width interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as scipy_stats

from ss3d.eval.stats import Interval

__all__ = ["paired_item_difference", "paired_seed_difference", "seed_interval", "verdict"]


def seed_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean over seeds with the Student-t interval; NaN bounds below two finite values."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return Interval.empty()
    mean = float(x.mean())
    if len(x) < 2:
        return Interval.empty(1, mean)
    half = float(scipy_stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1)
                 / math.sqrt(len(x)))
    return Interval(mean, mean - half, mean + half, len(x))


def paired_seed_difference(variant: dict[int, float], baseline: dict[int, float],
                           level: float = 0.95) -> Interval:
    """``variant − baseline`` on the seeds both have (``{seed: value}``), as
    :func:`seed_interval`."""
    common = sorted(set(variant) & set(baseline))
    return seed_interval([variant[s] - baseline[s] for s in common], level)


def paired_item_difference(differences: np.ndarray, level: float = 0.95, n_boot: int = 2000,
                           seed: int = 0) -> Interval:
    """Mean of ``differences`` (S seeds, I items) with a seeds-then-items bootstrap interval.

    Non-finite cells are left out of each mean. ``n`` is S × I. One seed is bootstrapped over
    items only (the within-run interval); one item over seeds only.
    """
    d = np.asarray(differences, dtype=float)
    if d.ndim != 2 or d.size == 0:
        return Interval.empty()
    finite = np.isfinite(d)
    if not finite.any():
        return Interval.empty()
    estimate = float(d[finite].mean())
    n_seeds, n_items = d.shape
    if n_seeds * n_items < 2:
        return Interval.empty(int(finite.sum()), estimate)
    rng = np.random.default_rng(seed)
    filled = np.where(finite, d, 0.0)
    means = np.empty(n_boot)
    for b in range(n_boot):
        seeds = rng.integers(0, n_seeds, n_seeds)
        items = rng.integers(0, n_items, n_items)
        mask = finite[np.ix_(seeds, items)]
        means[b] = filled[np.ix_(seeds, items)].sum() / max(int(mask.sum()), 1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Interval(estimate, float(low), float(high), int(finite.sum()))


def verdict(difference: Interval, higher_is_better: bool = True, seeds: int | None = None
            ) -> str:
    """"better" / "worse" when the interval excludes 0, else "level"; "a lead" for one seed."""
    if seeds is not None and seeds < 2:
        return "one seed: a lead, no verdict"
    if not (math.isfinite(difference.low) and math.isfinite(difference.high)):
        return "no interval"
    if math.isclose(difference.low, difference.high, rel_tol=1e-5, abs_tol=1e-9) and \
            difference.estimate != 0:
        # e.g. a pose accuracy 2 images higher on every seed: the seeds agree, but a zero-width
        # interval says nothing about the test items' sampling (the tolerance: MLflow keeps
        # metrics to about float32 precision)
        return "the same on every seed: no interval"
    if difference.low > 0:
        return "better" if higher_is_better else "worse"
    if difference.high < 0:
        return "worse" if higher_is_better else "better"
    return "level"
