"""Uncertainty helpers: bootstrap / paired bootstrap / Wilson intervals against known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from ss3d.eval.stats import (
    Interval,
    bootstrap_ci,
    paired_bootstrap_diff,
    required_n_for_half_width,
    required_n_for_proportion,
    wilson_interval,
)

NAN = float("nan")

# ---------------------------------------------------------------------------------------------
# Wilson


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (8, 10, 0.4902, 0.9433),  # Newcombe 1998 / standard tables
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (5, 10, 0.2366, 0.7634),
        (81, 263, 0.2553, 0.3662),  # Newcombe 1998, Table I example
    ],
)
def test_wilson_known_values(successes, n, low, high):
    ci = wilson_interval(successes, n)
    assert ci.estimate == pytest.approx(successes / n)
    assert ci.low == pytest.approx(low, abs=1e-4)
    assert ci.high == pytest.approx(high, abs=1e-4)
    assert ci.n == n


def test_wilson_exact_edges():
    assert wilson_interval(0, 10).low == 0.0
    assert wilson_interval(10, 10).high == 1.0


@pytest.mark.parametrize("level", [0.8, 0.95, 0.99])
@pytest.mark.parametrize(("successes", "n"), [(1, 3), (7, 20), (33, 50), (499, 1000)])
def test_wilson_matches_scipy(successes, n, level):
    ref = binomtest(successes, n).proportion_ci(confidence_level=level, method="wilson")
    ci = wilson_interval(successes, n, level=level)
    assert ci.low == pytest.approx(ref.low, abs=1e-10)
    assert ci.high == pytest.approx(ref.high, abs=1e-10)


def test_wilson_wider_at_higher_level():
    assert wilson_interval(8, 10, level=0.99).half_width > wilson_interval(8, 10).half_width


def test_wilson_empty_and_invalid():
    ci = wilson_interval(0, 0)
    assert ci.n == 0
    assert math.isnan(ci.estimate) and math.isnan(ci.low) and math.isnan(ci.high)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    with pytest.raises(ValueError):
        wilson_interval(-1, 10)
    with pytest.raises(ValueError):
        wilson_interval(5, 10, level=1.0)


# ---------------------------------------------------------------------------------------------
# bootstrap_ci


def test_bootstrap_constant_is_zero_width():
    ci = bootstrap_ci(np.full(30, 0.7))
    assert ci.estimate == pytest.approx(0.7, abs=1e-12)
    assert ci.low == pytest.approx(0.7, abs=1e-12)
    assert ci.high == pytest.approx(0.7, abs=1e-12)
    assert ci.half_width == pytest.approx(0.0, abs=1e-12)
    assert ci.n == 30


def test_bootstrap_half_width_matches_normal_theory():
    x = np.random.default_rng(1).normal(3.0, 1.0, size=400)
    ci = bootstrap_ci(x)
    assert ci.estimate == pytest.approx(x.mean())
    assert ci.half_width == pytest.approx(1.96 / math.sqrt(400), rel=0.15)  # 0.098
    assert ci.low < ci.estimate < ci.high


def test_bootstrap_coverage():
    """Over 200 datasets of n=50 the 95% interval covers the true mean 90-99% of the time."""
    rng = np.random.default_rng(123)
    true_mean, trials = 2.0, 200
    data = rng.gamma(shape=4.0, scale=0.5, size=(trials, 50))  # mean 2, mildly skewed
    covered = 0
    for i in range(trials):
        ci = bootstrap_ci(data[i], n_boot=500, seed=i)
        covered += ci.low <= true_mean <= ci.high
    assert 0.90 <= covered / trials <= 0.99


def test_bootstrap_level_orders_widths():
    x = np.random.default_rng(2).normal(size=100)
    w80 = bootstrap_ci(x, level=0.8).half_width
    w95 = bootstrap_ci(x, level=0.95).half_width
    w99 = bootstrap_ci(x, level=0.99).half_width
    assert w80 < w95 < w99


def test_bootstrap_deterministic_given_seed():
    x = np.random.default_rng(3).exponential(size=60)
    assert bootstrap_ci(x, seed=7) == bootstrap_ci(x, seed=7)
    assert bootstrap_ci(x, seed=7) != bootstrap_ci(x, seed=8)


@pytest.mark.parametrize(("n", "rows"), [(5000, None), (51, 7), (40, 1), (40, 2000)])
def test_bootstrap_in_chunks_equals_the_unchunked_bootstrap(monkeypatch, n, rows):
    """Chunks bound the memory only: the resample means, the interval and the paired
    difference are the ones of one ``(n_boot, n)`` draw, bit for bit, whatever the chunk
    (5000 items: the default bound gives two chunks; 51 items, 7 rows a chunk: a ragged last
    chunk; one row a chunk; one chunk).

    Mutations caught (each fails it): the ragged last chunk dropped
    (``range(0, n_boot - rows + 1, rows)``); every chunk written at the front of the means
    (``means[:stop - start]``); each chunk drawn from a fresh generator of the same seed."""
    from ss3d.eval import stats

    x = np.random.default_rng(4).normal(size=n)
    y = x + np.random.default_rng(5).normal(0.1, 0.5, size=n)
    if rows is not None:
        monkeypatch.setattr(stats, "_MAX_DRAWS_PER_CHUNK", rows * n)
    assert (n * 1000 > stats._MAX_DRAWS_PER_CHUNK) == (rows != 2000)  # chunked unless 2000
    chunked = (stats._bootstrap_means(x, 1000, np.random.default_rng(0)),
               bootstrap_ci(x, n_boot=1000), paired_bootstrap_diff(y, x, n_boot=1000))
    monkeypatch.setattr(stats, "_MAX_DRAWS_PER_CHUNK", 10**12)  # one (n_boot, n) draw
    whole = np.random.default_rng(0).integers(0, n, size=(1000, n))
    assert np.array_equal(chunked[0], x[whole].mean(axis=1))
    assert chunked[1] == bootstrap_ci(x, n_boot=1000)
    assert chunked[2] == paired_bootstrap_diff(y, x, n_boot=1000)


def test_bootstrap_drops_nan_and_inf():
    x = np.random.default_rng(5).normal(size=40)
    dirty = np.concatenate([x[:10], [NAN], x[10:], [np.inf, -np.inf, NAN]])
    assert bootstrap_ci(dirty) == bootstrap_ci(x)
    assert bootstrap_ci(dirty).n == 40


def test_bootstrap_small_n_has_nan_bounds():
    empty = bootstrap_ci([])
    assert empty.n == 0 and math.isnan(empty.estimate)
    assert math.isnan(empty.low) and math.isnan(empty.high) and math.isnan(empty.half_width)
    assert bootstrap_ci([NAN, NAN]).n == 0

    one = bootstrap_ci([0.42, NAN])
    assert one.n == 1 and one.estimate == 0.42
    assert math.isnan(one.low) and math.isnan(one.high) and math.isnan(one.half_width)
    assert not one.is_defined


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError):
        bootstrap_ci(np.zeros((3, 4)))
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], level=0.0)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], n_boot=0)


# ---------------------------------------------------------------------------------------------
# paired_bootstrap_diff


def test_paired_constant_shift_is_exact():
    b = np.random.default_rng(6).uniform(size=80)
    ci = paired_bootstrap_diff(b + 0.1, b)
    assert ci.estimate == pytest.approx(0.1, abs=1e-12)
    assert ci.low == pytest.approx(0.1, abs=1e-12)
    assert ci.high == pytest.approx(0.1, abs=1e-12)
    assert ci.half_width == pytest.approx(0.0, abs=1e-12)
    assert ci.excludes_zero


def test_pairing_detects_what_unpaired_intervals_miss():
    """Per-item difficulty dominates; the methods differ by a small, consistent 0.05."""
    rng = np.random.default_rng(7)
    difficulty = rng.normal(0.0, 1.0, size=100)
    a = difficulty + 0.05 + rng.normal(0.0, 0.02, size=100)
    b = difficulty + rng.normal(0.0, 0.02, size=100)

    ci_a, ci_b = bootstrap_ci(a), bootstrap_ci(b)
    assert not ci_a.above(ci_b) and not ci_b.above(ci_a)  # separate intervals overlap

    diff = paired_bootstrap_diff(a, b)
    assert diff.excludes_zero and diff.low > 0
    assert diff.low < 0.05 < diff.high
    assert diff.half_width < 0.2 * ci_a.half_width


def test_paired_drops_pairs_with_any_nonfinite():
    a = np.array([1.0, 2.0, NAN, 4.0, 5.0, 6.0])
    b = np.array([0.5, np.inf, 3.0, 3.0, 4.5, 5.0])
    ci = paired_bootstrap_diff(a, b)
    assert ci.n == 4  # items 0, 3, 4, 5
    assert ci.estimate == pytest.approx(np.mean([0.5, 1.0, 0.5, 1.0]))


def test_paired_mismatched_lengths_raise():
    with pytest.raises(ValueError, match=r"len\(a\)=3.*len\(b\)=4"):
        paired_bootstrap_diff([1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0])


def test_paired_sign_flips():
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=50), rng.normal(size=50)
    ab, ba = paired_bootstrap_diff(a, b, seed=3), paired_bootstrap_diff(b, a, seed=3)
    assert ab.estimate == pytest.approx(-ba.estimate)
    assert ab.low == pytest.approx(-ba.high)
    assert ab.high == pytest.approx(-ba.low)


# ---------------------------------------------------------------------------------------------
# Interval


def test_above_below_disjoint_and_overlapping():
    lo, hi = Interval(0.3, 0.2, 0.4, 10), Interval(0.7, 0.6, 0.8, 10)
    assert hi.above(lo) and lo.below(hi)
    assert not lo.above(hi) and not hi.below(lo)

    overlap = Interval(0.45, 0.35, 0.55, 10)
    assert not overlap.above(lo) and not overlap.below(lo)
    assert not lo.above(overlap) and not lo.below(overlap)

    touching = Interval(0.5, 0.4, 0.6, 10)  # touches lo at 0.4: not a separation
    assert not touching.above(lo) and not lo.below(touching)


def test_nan_intervals_never_compare():
    nan_ci = Interval.empty(0)
    ok = Interval(0.5, 0.4, 0.6, 10)
    assert not nan_ci.above(ok) and not nan_ci.below(ok)
    assert not ok.above(nan_ci) and not ok.below(nan_ci)
    assert not nan_ci.excludes_zero


def test_excludes_zero():
    assert Interval(0.1, 0.05, 0.15, 5).excludes_zero
    assert Interval(-0.1, -0.15, -0.05, 5).excludes_zero
    assert not Interval(0.01, -0.02, 0.04, 5).excludes_zero
    assert not Interval(0.05, 0.0, 0.1, 5).excludes_zero


def test_fmt_and_as_dict():
    ci = Interval(0.6123, 0.5711, 0.6504, 200)
    assert ci.fmt() == "0.612 [0.571, 0.650]"
    assert ci.fmt(2) == "0.61 [0.57, 0.65]"
    assert str(ci) == ci.fmt()
    assert Interval(-0.0123, -0.02, -0.004, 9).fmt() == "-0.012 [-0.020, -0.004]"
    assert Interval.empty(0).fmt() == "\u2013"
    assert Interval.empty(1, 0.42).fmt() == "0.420 [\u2013, \u2013]"
    assert ci.as_dict("fscore") == {"fscore": 0.6123, "fscore_lo": 0.5711,
                                    "fscore_hi": 0.6504, "fscore_n": 200}
    assert ci.half_width == pytest.approx(0.03965)


def test_interval_is_frozen():
    ci = Interval(0.5, 0.4, 0.6, 10)
    with pytest.raises(AttributeError):
        ci.low = 0.0  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# sample sizes


def test_required_n_for_half_width():
    assert required_n_for_half_width(1.0, 0.098) == 400
    assert required_n_for_half_width(2.0, 0.098) == 1600
    assert required_n_for_half_width(1.0, 0.1, level=0.99) == 664  # (2.5758 / 0.1)^2 = 663.5
    assert required_n_for_half_width(0.0, 0.1) == 1
    with pytest.raises(ValueError):
        required_n_for_half_width(1.0, 0.0)


def test_required_n_for_proportion():
    assert required_n_for_proportion(0.5, 0.05) == 385  # the classic survey size
    assert required_n_for_proportion(0.5, 0.03) == 1068
    assert required_n_for_proportion(0.1, 0.05) == 139
    with pytest.raises(ValueError):
        required_n_for_proportion(1.5, 0.05)


def test_required_n_achieves_half_width():
    """Closing the loop: a bootstrap at the suggested n has about the requested half-width."""
    n = required_n_for_half_width(1.0, 0.1)
    x = np.random.default_rng(9).normal(size=n)
    assert bootstrap_ci(x).half_width == pytest.approx(0.1, rel=0.15)
    p_n = required_n_for_proportion(0.5, 0.05)
    assert wilson_interval(p_n // 2, p_n).half_width == pytest.approx(0.05, rel=0.02)
