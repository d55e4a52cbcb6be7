"""Uncertainty helpers for the evaluation report: confidence intervals and sample sizes.

Every number in the report that is an average over benchmark items (mean Chamfer distance,
mean F-score, success rate, ...) should come with an interval, and "method A beats method B"
should only be claimed when the intervals say so. This module provides:

* :func:`bootstrap_ci` — percentile bootstrap interval for the mean of per-item values;
* :func:`paired_bootstrap_diff` — the same for the mean *difference* of two methods scored on
  the same items, resampling items (pairs), so per-item difficulty cancels out;
* :func:`wilson_interval` — Wilson score interval for a binomial proportion (success rates);
* :class:`Interval` — the result: estimate, bounds, item count, comparisons and formatting;
* :func:`required_n_for_half_width`, :func:`required_n_for_proportion` — normal-approximation
  sample sizes, for sizing the benchmark before running it.

Conventions:

* ``level`` is the two-sided confidence level, in ``(0, 1)``;
* non-finite values (NaN, ±inf) are dropped before anything is computed, and
  :attr:`Interval.n` counts the items actually used, so a caller can compare it with the
  input length to see how many were dropped;
* fewer than two usable items give NaN bounds (one item carries no information about the
  spread), so a report never shows a fake zero-width interval;
* results are deterministic given ``seed`` (``np.random.default_rng(seed)``).

Only numpy and the standard library are used (``statistics.NormalDist`` for normal quantiles).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "Interval",
    "bootstrap_ci",
    "paired_bootstrap_diff",
    "required_n_for_half_width",
    "required_n_for_proportion",
    "wilson_interval",
]

# Upper bound on the number of resampled indices drawn at once (rows * n), so that large
# benchmarks bootstrap in chunks of bounded memory (2**22 int64 = 32 MiB) instead of one
# (n_boot, n) array. The chunking depends only on n, so results stay deterministic.
_MAX_DRAWS_PER_CHUNK = 1 << 22

_NAN = float("nan")
_DASH = "\u2013"  # en dash, shown for a missing number


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval.

    Attributes:
        estimate: the point estimate (sample mean, mean difference or observed proportion);
            NaN when there were no usable items.
        low: lower bound; NaN when it could not be estimated (fewer than two items for the
            bootstrap, ``n == 0`` for Wilson).
        high: upper bound; NaN likewise.
        n: number of items actually used (after dropping non-finite values).
    """

    estimate: float
    low: float
    high: float
    n: int

    @classmethod
    def empty(cls, n: int = 0, estimate: float = _NAN) -> Interval:
        """An interval with NaN bounds (nothing could be estimated)."""
        return cls(float(estimate), _NAN, _NAN, int(n))

    @property
    def half_width(self) -> float:
        """``(high - low) / 2``; NaN when a bound is NaN.

        Percentile bootstrap intervals need not be symmetric about the estimate, so this is
        half the interval's width, not necessarily the distance from estimate to either bound.
        """
        return (self.high - self.low) / 2

    @property
    def is_defined(self) -> bool:
        """True when both bounds are finite numbers."""
        return math.isfinite(self.low) and math.isfinite(self.high)

    def above(self, other: Interval) -> bool:
        """True only if this interval lies entirely above ``other`` (``self.low > other.high``).

        Overlapping intervals, touching intervals and any NaN bound give False. Note that
        non-overlap of two *separate* intervals is a conservative test; to compare two methods
        scored on the same items prefer :func:`paired_bootstrap_diff` and
        :attr:`excludes_zero`.
        """
        return bool(self.low > other.high)

    def below(self, other: Interval) -> bool:
        """True only if this interval lies entirely below ``other`` (``self.high < other.low``).

        Overlapping intervals, touching intervals and any NaN bound give False.
        """
        return bool(self.high < other.low)

    @property
    def excludes_zero(self) -> bool:
        """True when the interval lies strictly on one side of 0 (for differences).

        False when it contains or touches 0, or when a bound is NaN.
        """
        return bool(self.low > 0 or self.high < 0)

    def as_dict(self, prefix: str) -> dict[str, float]:
        """Flat record for tables / MLflow metrics.

        Returns ``{prefix: estimate, f"{prefix}_lo": low, f"{prefix}_hi": high,
        f"{prefix}_n": n}``.
        """
        return {
            prefix: self.estimate,
            f"{prefix}_lo": self.low,
            f"{prefix}_hi": self.high,
            f"{prefix}_n": self.n,
        }

    def fmt(self, digits: int = 3) -> str:
        """Human-readable form, e.g. ``"0.612 [0.571, 0.650]"``.

        A NaN estimate is shown as ``"–"``; NaN bounds alone as ``"0.612 [–, –]"``.
        """
        if math.isnan(self.estimate):
            return _DASH

        def num(x: float) -> str:
            return _DASH if math.isnan(x) else f"{x:.{digits}f}"

        return f"{num(self.estimate)} [{num(self.low)}, {num(self.high)}]"

    def __str__(self) -> str:
        return self.fmt()


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")


def _z(level: float) -> float:
    """Two-sided standard-normal quantile: 1.95996... for ``level = 0.95``."""
    _check_level(level)
    return NormalDist().inv_cdf(0.5 + level / 2)


def _as_1d(values: ArrayLike, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
    return x


def _bootstrap_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot,)`` means of resamples (with replacement) of the ``(n,)`` array ``x``.

    Resample indices are drawn as ``(rows, n)`` integer arrays, in as few chunks as the memory
    bound allows (one chunk for typical benchmark sizes).
    """
    n = x.shape[0]
    rows = max(1, _MAX_DRAWS_PER_CHUNK // n)
    means = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, rows):
        stop = min(start + rows, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))  # (rows, n) item indices
        means[start:stop] = x[idx].mean(axis=1)
    return means


def _percentile_interval(x: np.ndarray, level: float, n_boot: int, seed: int) -> Interval:
    """Percentile bootstrap of the mean of the finite ``(n,)`` array ``x``."""
    _check_level(level)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    n = int(x.shape[0])
    if n == 0:
        return Interval.empty(0)
    estimate = float(x.mean())
    if n < 2:
        return Interval.empty(n, estimate)
    means = _bootstrap_means(x, n_boot, np.random.default_rng(seed))
    alpha = 1.0 - level
    low, high = np.quantile(means, [alpha / 2, 1.0 - alpha / 2])
    return Interval(estimate, float(low), float(high), n)


def bootstrap_ci(values: ArrayLike, *, level: float = 0.95, n_boot: int = 2000,
                 seed: int = 0) -> Interval:
    """Percentile bootstrap confidence interval for the mean of ``values``.

    Args:
        values: ``(n,)`` per-item values (e.g. per-object Chamfer distances). Non-finite
            entries (NaN, ±inf) are dropped first.
        level: two-sided confidence level in ``(0, 1)``.
        n_boot: number of bootstrap resamples; each is an ``(n,)`` draw of item indices with
            replacement, all drawn as an ``(n_boot, n)`` integer array.
        seed: seed for ``np.random.default_rng``; the result is deterministic given it.

    Returns:
        ``Interval(mean, low, high, n)`` with ``n`` the number of finite items. The bounds are
        the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the bootstrap means.
        With ``n == 0`` every field but ``n`` is NaN. With ``n == 1`` the estimate is that
        value but the bounds are NaN: one item gives no uncertainty estimate, and a
        zero-width interval would wrongly suggest certainty.

    Raises:
        ValueError: ``values`` is not 1-D, ``level`` is outside ``(0, 1)`` or ``n_boot < 1``.
    """
    x = _as_1d(values, "values")
    return _percentile_interval(x[np.isfinite(x)], level, n_boot, seed)


def paired_bootstrap_diff(a: ArrayLike, b: ArrayLike, *, level: float = 0.95,
                          n_boot: int = 2000, seed: int = 0) -> Interval:
    """Bootstrap interval for the mean paired difference ``mean(a - b)``.

    ``a[i]`` and ``b[i]`` must be two methods' scores on the same item ``i``. Items are
    resampled as pairs, so variation shared by both methods (some objects are simply hard)
    cancels; this is far more sensitive than checking whether two separate
    :func:`bootstrap_ci` intervals overlap. "A is better than B" (for a higher-is-better
    metric) is supported when the result's :attr:`Interval.excludes_zero` holds with
    ``low > 0``.

    Args:
        a: ``(n,)`` per-item scores of the first method.
        b: ``(n,)`` per-item scores of the second method, same items in the same order.
        level: two-sided confidence level in ``(0, 1)``.
        n_boot: number of bootstrap resamples of the items.
        seed: seed for ``np.random.default_rng``.

    Returns:
        ``Interval(mean(a - b), low, high, n)`` over the ``n`` items where both ``a`` and
        ``b`` are finite (other items are dropped). NaN bounds when ``n < 2``, as in
        :func:`bootstrap_ci`.

    Raises:
        ValueError: ``a`` and ``b`` differ in shape (the message names both lengths) or are
            not 1-D; or ``level`` / ``n_boot`` are invalid.
    """
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    if xa.shape != xb.shape:
        raise ValueError(
            f"paired_bootstrap_diff needs a and b of the same length, got len(a)={len(xa)} "
            f"(shape {xa.shape}) and len(b)={len(xb)} (shape {xb.shape})"
        )
    xa, xb = _as_1d(xa, "a"), _as_1d(xb, "b")
    both = np.isfinite(xa) & np.isfinite(xb)
    return _percentile_interval(xa[both] - xb[both], level, n_boot, seed)


def wilson_interval(successes: int, n: int, *, level: float = 0.95) -> Interval:
    """Wilson score interval for a binomial proportion ``successes / n``.

    Unlike the normal ("Wald") interval it stays inside ``[0, 1]`` and is well behaved at 0 and
    ``n`` successes and for small ``n``. With ``z`` the two-sided normal quantile and
    ``p = successes / n``::

        centre = (p + z²/(2n)) / (1 + z²/n)
        half   = z / (1 + z²/n) * sqrt(p(1-p)/n + z²/(4n²))

    Args:
        successes: number of successes, ``0 <= successes <= n``.
        n: number of trials.
        level: two-sided confidence level in ``(0, 1)``.

    Returns:
        ``Interval(p, centre - half, centre + half, n)``; the estimate is the observed
        proportion (not the Wilson centre). ``low`` is exactly 0 when ``successes == 0`` and
        ``high`` exactly 1 when ``successes == n``. ``n == 0`` gives NaNs.

    Raises:
        ValueError: ``n < 0``, ``successes`` outside ``[0, n]`` or ``level`` outside ``(0, 1)``.
    """
    z = _z(level)
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return Interval.empty(0)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(p, low, high, int(n))


def _ceil(x: float) -> int:
    # tolerate float fuzz so that an exact answer like 400.0000000001 is not rounded up to 401
    return max(1, math.ceil(x - 1e-9))


def required_n_for_half_width(std: float, half_width: float, level: float = 0.95) -> int:
    """Items needed for a CI of the mean with the given half-width (normal approximation).

    ``n = ceil((z * std / half_width)²)``: e.g. per-item std 1 and half-width 0.098 at 95%
    need 400 items. ``std`` is the per-item standard deviation (estimate it from a pilot run);
    for a paired comparison use the std of the per-item *differences*, which is usually much
    smaller than either method's own std. Bootstrap intervals from :func:`bootstrap_ci` will be
    close to this for moderate ``n`` and not too skewed data.

    Raises:
        ValueError: ``std < 0``, ``half_width <= 0`` or ``level`` outside ``(0, 1)``.
    """
    z = _z(level)
    if std < 0 or not half_width > 0:
        raise ValueError(f"need std >= 0 and half_width > 0, got std={std}, "
                         f"half_width={half_width}")
    return _ceil((z * std / half_width) ** 2)


def required_n_for_proportion(p: float, half_width: float, level: float = 0.95) -> int:
    """Trials needed to estimate a proportion near ``p`` to ± ``half_width`` (normal approx.).

    ``n = ceil(z² p(1-p) / half_width²)``; ``p = 0.5`` is the worst case (e.g. ±0.05 at 95%
    needs 385 trials). Near 0 or 1 the normal approximation understates what is needed (at
    ``p = 0`` it would say 1), so pass a conservative ``p`` (closer to 0.5 than expected) or
    check the result with :func:`wilson_interval`.

    Raises:
        ValueError: ``p`` outside ``[0, 1]``, ``half_width <= 0`` or ``level`` outside
            ``(0, 1)``.
    """
    z = _z(level)
    if not 0.0 <= p <= 1.0 or not half_width > 0:
        raise ValueError(f"need 0 <= p <= 1 and half_width > 0, got p={p}, "
                         f"half_width={half_width}")
    return _ceil(z * z * p * (1.0 - p) / half_width**2)
