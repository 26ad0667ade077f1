"""textclf.monitor.stats: each two-sample test on identical and on clearly different samples, the MMD permutation
test's power and calibration, its statistic against the textbook formula, bootstrap intervals, and the share helpers."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import accuracy_score, f1_score

from textclf.monitor.stats import (
    accuracy,
    bootstrap_ci,
    categorical_test,
    histogram_shares,
    ks_test,
    macro_f1,
    mmd_test,
    share_test,
    shares,
)


def test_ks_identical_and_shifted():
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    same = ks_test("x", x, x.copy())
    assert same.p_value == pytest.approx(1.0) and same.statistic == 0.0 and same.effect == 0.0
    assert same.method == "ks" and not same.drifted

    y = rng.normal(loc=1.0, size=400)
    moved = ks_test("x", x, y)
    assert moved.p_value < 1e-3
    assert moved.effect == moved.statistic == pytest.approx(sps.ks_2samp(x, y).statistic)
    assert moved.reference == pytest.approx(x.mean()) and moved.current == pytest.approx(y.mean())
    assert (moved.n_reference, moved.n_current) == (500, 400)


def test_ks_refuses_an_empty_side():
    with pytest.raises(ValueError, match="empty"):
        ks_test("x", np.arange(3.0), np.array([]))


@pytest.mark.parametrize("value", [False, True])
def test_share_all_one_value_on_both_sides_gives_p_one(value):
    result = share_test("empty", np.full(50, value), np.full(30, value))
    assert result.p_value == 1.0  # not NaN
    assert result.effect == 0.0 and result.reference == result.current == float(value)


def test_share_identical_and_different_large_samples_use_chi2():
    rng = np.random.default_rng(1)
    ref = rng.random(2000) < 0.3
    same = share_test("dup", ref, ref.copy())
    assert same.method == "chi2" and same.p_value == pytest.approx(1.0)

    cur = rng.random(1500) < 0.45
    moved = share_test("dup", ref, cur)
    table = [[ref.sum(), (~ref).sum()], [cur.sum(), (~cur).sum()]]
    expected = sps.chi2_contingency(table, correction=False)
    assert moved.method == "chi2"
    assert moved.p_value == pytest.approx(expected.pvalue) and moved.p_value < 1e-3
    assert moved.statistic == pytest.approx(expected.statistic)
    assert moved.effect == pytest.approx(abs(ref.mean() - cur.mean()))
    assert moved.reference == pytest.approx(ref.mean()) and moved.current == pytest.approx(cur.mean())


def test_share_small_expected_cells_use_fisher():
    ref = np.array([True] * 1 + [False] * 39)
    cur = np.array([True] * 12 + [False] * 8)
    result = share_test("empty", ref, cur)
    assert result.method == "fisher"  # expected True cells: 13 * 40 / 60 = 8.7 and 13 * 20 / 60 = 4.3 < 5
    assert result.p_value == pytest.approx(sps.fisher_exact([[1, 39], [12, 8]]).pvalue)
    assert result.p_value < 1e-3
    assert math.isfinite(result.statistic)


def test_categorical_identical_different_and_empty_categories():
    same = categorical_test("label", np.array([40, 0, 60]), np.array([20, 0, 30]))
    assert same.method == "chi2" and same.p_value == pytest.approx(1.0) and same.effect == pytest.approx(0.0)

    ref, cur = np.array([300, 0, 200, 500]), np.array([100, 0, 250, 150])
    moved = categorical_test("label", ref, cur)
    expected = sps.chi2_contingency(np.array([[300, 200, 500], [100, 250, 150]]), correction=False)
    assert moved.p_value == pytest.approx(expected.pvalue) and moved.p_value < 1e-3
    assert moved.statistic == pytest.approx(expected.statistic)
    assert moved.effect == pytest.approx(0.5 * (abs(0.3 - 0.2) + 0 + abs(0.2 - 0.5) + abs(0.5 - 0.3)))
    assert moved.reference == pytest.approx(0.3) and moved.current == pytest.approx(0.2)  # first category's share
    assert (moved.n_reference, moved.n_current) == (1000, 500)


def test_categorical_one_category_left_gives_p_one():
    result = categorical_test("label", np.array([0, 7, 0]), np.array([0, 3, 0]))
    assert result.p_value == 1.0 and result.effect == 0.0


def test_categorical_refuses_mismatched_or_empty_counts():
    with pytest.raises(ValueError, match="categories"):
        categorical_test("label", np.array([1, 2]), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="no counts"):
        categorical_test("label", np.array([1, 2]), np.array([0, 0]))


def _textbook_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 written out from the definition, with the same median-heuristic Gaussian kernel."""
    z = np.vstack([x, y])
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    kernel = np.exp(-d2 / (2 * np.median(d2[np.triu_indices(len(z), 1)])))
    n, m = len(x), len(y)
    kxx, kyy, kxy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    within_x = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within_x + within_y - 2 * kxy.mean())


def test_mmd_statistic_matches_the_definition():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 6)), rng.normal(loc=0.3, size=(25, 6))
    result = mmd_test("embedding", x, y, permutations=50, seed=0)
    assert result.method == "mmd-permutation"
    assert result.statistic == result.effect == pytest.approx(_textbook_mmd2(x, y), rel=1e-9)
    assert (result.n_reference, result.n_current) == (40, 25)
    assert 0 < result.reference <= 1 and 0 < result.current <= 1  # mean within-sample kernel values


def test_mmd_same_distribution_is_not_flagged_and_a_shift_is():
    rng = np.random.default_rng(3)
    same = mmd_test("embedding", rng.normal(size=(200, 20)), rng.normal(size=(200, 20)), permutations=200, seed=0)
    assert same.p_value > 0.05
    shifted = mmd_test("embedding", rng.normal(size=(200, 20)), rng.normal(loc=0.5, size=(200, 20)), permutations=200, seed=0)
    assert shifted.p_value < 0.01
    assert shifted.p_value >= 1 / 201  # the permutation p-value is never 0
    assert shifted.statistic > same.statistic


def test_mmd_p_values_are_calibrated_under_the_null():
    small = []
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        result = mmd_test("embedding", rng.normal(size=(60, 5)), rng.normal(size=(60, 5)), permutations=200, seed=seed)
        small.append(result.p_value < 0.05)
    assert sum(small) <= 4  # at most ~10% of same-distribution pairs below 0.05 (5% expected)


def test_mmd_is_deterministic_for_a_seed():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(80, 8)), rng.normal(size=(70, 8))
    first = mmd_test("embedding", x, y, permutations=100, seed=7)
    assert mmd_test("embedding", x, y, permutations=100, seed=7) == first


def test_mmd_refuses_bad_shapes():
    with pytest.raises(ValueError, match="width"):
        mmd_test("embedding", np.zeros((5, 3)), np.zeros((5, 4)), permutations=10, seed=0)
    with pytest.raises(ValueError, match="at least 2"):
        mmd_test("embedding", np.zeros((1, 3)), np.zeros((5, 3)), permutations=10, seed=0)


def _predictions(n: int, seed: int, n_classes: int = 3, right: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, n_classes, n)
    y_pred = np.where(rng.random(n) < right, y_true, rng.integers(0, n_classes, n))
    return y_true, y_pred


def test_macro_f1_matches_sklearn():
    y_true, y_pred = _predictions(5000, 6, n_classes=4)
    assert macro_f1(y_true, y_pred, 4) == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    # a class in neither y_true nor y_pred is left out, as sklearn does; one only predicted counts as F1 0
    assert macro_f1(np.array([0, 0, 2]), np.array([0, 2, 2]), 4) == pytest.approx(f1_score([0, 0, 2], [0, 2, 2], average="macro"))
    assert macro_f1(np.array([0, 0]), np.array([0, 1]), 3) == pytest.approx(f1_score([0, 0], [0, 1], average="macro"))


def test_bootstrap_ci_contains_the_estimate_and_narrows_with_more_rows():
    y_true, y_pred = _predictions(5000, 7)
    metric = functools.partial(macro_f1, n_classes=3)
    wide = bootstrap_ci(y_true[:200], y_pred[:200], metric, resamples=300, level=0.95, seed=0)
    narrow = bootstrap_ci(y_true, y_pred, metric, resamples=300, level=0.95, seed=0)
    assert wide[0] <= metric(y_true[:200], y_pred[:200]) <= wide[1]
    assert narrow[0] <= metric(y_true, y_pred) <= narrow[1]
    assert narrow[1] - narrow[0] < 0.5 * (wide[1] - wide[0])  # ~sqrt(25) = 5x narrower
    assert bootstrap_ci(y_true, y_pred, metric, resamples=300, level=0.95, seed=0) == narrow  # seeded
    lower = bootstrap_ci(y_true, y_pred, metric, resamples=300, level=0.5, seed=0)
    assert narrow[0] <= lower[0] <= lower[1] <= narrow[1]


def test_bootstrap_accuracy_fast_path_equals_the_generic_one():
    y_true, y_pred = _predictions(3000, 8)
    generic = bootstrap_ci(y_true, y_pred, lambda t, p: float((t == p).mean()), resamples=250, level=0.9, seed=3)
    assert bootstrap_ci(y_true, y_pred, accuracy, resamples=250, level=0.9, seed=3) == pytest.approx(generic)
    assert bootstrap_ci(y_true, y_pred, accuracy_score, resamples=250, level=0.9, seed=3) == pytest.approx(generic)


def test_bootstrap_ci_accepts_sklearn_f1_and_agrees_with_macro_f1():
    y_true, y_pred = _predictions(500, 9)
    ours = bootstrap_ci(y_true, y_pred, functools.partial(macro_f1, n_classes=3), resamples=50, level=0.95, seed=1)
    theirs = bootstrap_ci(y_true, y_pred, lambda t, p: f1_score(t, p, average="macro"), resamples=50, level=0.95, seed=1)
    assert ours == pytest.approx(theirs)


def test_bootstrap_ci_refuses_bad_arguments():
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(np.zeros(3), np.zeros(3), accuracy, resamples=10, level=1.0, seed=0)
    with pytest.raises(ValueError, match="no rows"):
        bootstrap_ci(np.zeros(0), np.zeros(0), accuracy, resamples=10, level=0.9, seed=0)


def test_shares_and_histogram_shares():
    assert shares(np.array([0, 1, 1, 3]), 4).tolist() == [0.25, 0.5, 0.0, 0.25]
    assert shares(np.array([], dtype=int), 3).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="class ids"):
        shares(np.array([0, 3]), 3)

    edges = np.linspace(0.0, 1.0, 5)
    hist = histogram_shares(np.array([-0.5, 0.1, 0.3, 0.6, 1.0, 1.5]), edges)
    assert hist.sum() == pytest.approx(1.0)  # out-of-range values land in the end bins
    assert hist.tolist() == pytest.approx([2 / 6, 1 / 6, 1 / 6, 2 / 6])
    assert histogram_shares(np.array([]), edges).tolist() == [0.0, 0.0, 0.0, 0.0]
