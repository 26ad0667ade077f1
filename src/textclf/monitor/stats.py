"""Two-sample tests for drift monitoring, bootstrap intervals for scores, and share helpers; pure numpy/scipy.

Every test returns a `TwoSampleTest` with `drifted` left False: the caller applies the config's bounds.
Everything random takes a seed (`np.random.default_rng(seed)`): one seed, one answer.

- `ks_test`: two-sample Kolmogorov-Smirnov on a numeric value (statistic = effect = D).
- `share_test`: two proportions in a 2x2 table, Fisher's exact test when an expected cell is under 5, else
  Pearson's chi-square without Yates' correction (effect = |share difference|).
- `categorical_test`: chi-square test of homogeneity on the 2 x k table of counts (effect = total variation distance).
- `mmd_test`: unbiased MMD^2 with a Gaussian kernel and a permutation p-value; the pooled kernel matrix is built once
  and every permutation is a few block sums of it, batched as one matrix product.
- `bootstrap_ci`: percentile bootstrap of any metric over rows (vectorised for accuracy); `macro_f1` is a bincount
  macro-F1 that matches sklearn's `f1_score(average="macro")` at a fraction of its per-call cost.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats as sps
from sklearn.metrics import accuracy_score

from textclf.monitor.result import TwoSampleTest

# Resamples (bootstrap) and permutations (MMD) are drawn this many at a time: bounded memory, and the same draws
# whichever path consumes them.
_BATCH = 100
# The median heuristic reads the pairwise distances of at most this many pooled points.
_MEDIAN_POINTS = 1000


def _as_1d(values: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{what}: the sample is empty; a two-sample test needs rows on both sides")
    return arr


def ks_test(name: str, reference: np.ndarray, current: np.ndarray) -> TwoSampleTest:
    """Two-sample Kolmogorov-Smirnov (scipy's `ks_2samp`, two-sided); reference/current are the sample means."""
    ref = _as_1d(reference, f"{name} reference").astype(np.float64)
    cur = _as_1d(current, f"{name} current").astype(np.float64)
    res = sps.ks_2samp(ref, cur)
    d = float(res.statistic)
    return TwoSampleTest(
        name=name,
        method="ks",
        statistic=d,
        p_value=float(res.pvalue),
        effect=d,
        reference=float(ref.mean()),
        current=float(cur.mean()),
        n_reference=int(ref.size),
        n_current=int(cur.size),
    )


def _pearson_chi2(table: np.ndarray) -> float:
    """Pearson's chi-square of a table with no empty row or column (no continuity correction)."""
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum())


def share_test(name: str, reference: np.ndarray, current: np.ndarray) -> TwoSampleTest:
    """Do two boolean samples have the same share of True? A 2x2 test of two proportions.

    Fisher's exact test (method "fisher") when any expected cell is under 5, where the chi-square approximation is
    poor; otherwise Pearson's chi-square without Yates' correction (method "chi2"), which is exact enough there and
    far cheaper on large samples. `statistic` is Pearson's chi-square of the table in both cases (finite, unlike
    Fisher's odds ratio); `method` says which test gave the p-value. When both sides are all False or all True there
    is nothing to compare: p = 1.0 (scipy would give NaN). reference/current are the shares of True.
    """
    ref = _as_1d(reference, f"{name} reference").astype(bool)
    cur = _as_1d(current, f"{name} current").astype(bool)
    n, m = int(ref.size), int(cur.size)
    a, c = int(ref.sum()), int(cur.sum())
    p_ref, p_cur = a / n, c / m
    table = np.array([[a, n - a], [c, m - c]], dtype=np.float64)
    if (table.sum(axis=0) == 0).any():  # one column empty: both sides all False or all True
        method, chi2, p = "chi2", 0.0, 1.0
    else:
        chi2 = _pearson_chi2(table)
        expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
        if (expected < 5).any():
            method, p = "fisher", float(sps.fisher_exact(table.astype(np.int64)).pvalue)
        else:
            method, p = "chi2", float(sps.chi2.sf(chi2, df=1))
    return TwoSampleTest(
        name=name,
        method=method,
        statistic=chi2,
        p_value=min(p, 1.0),  # Fisher's summed point probabilities can round a hair above 1
        effect=abs(p_ref - p_cur),
        reference=p_ref,
        current=p_cur,
        n_reference=n,
        n_current=m,
    )


def categorical_test(name: str, reference_counts: np.ndarray, current_counts: np.ndarray) -> TwoSampleTest:
    """Chi-square test of homogeneity on the 2 x k table of category counts (method "chi2").

    Categories empty on both sides are dropped (they carry no information and would divide by zero); with one
    category left the sides cannot differ: p = 1.0. No continuity correction, also when two categories remain (as
    `share_test`'s chi-square). effect is the total variation distance 0.5 * sum |p - q| between the share vectors;
    reference/current are the share of the first category (index 0: e.g. the first label), for the report line.
    """
    ref = np.asarray(reference_counts, dtype=np.float64).reshape(-1)
    cur = np.asarray(current_counts, dtype=np.float64).reshape(-1)
    if ref.shape != cur.shape:
        raise ValueError(f"{name}: {ref.size} reference categories but {cur.size} current ones; count the same categories")
    if (ref < 0).any() or (cur < 0).any():
        raise ValueError(f"{name}: category counts must be non-negative")
    n, m = ref.sum(), cur.sum()
    if n == 0 or m == 0:
        raise ValueError(f"{name}: one side has no counts; a two-sample test needs rows on both sides")
    p_ref, p_cur = ref / n, cur / m
    keep = (ref + cur) > 0
    chi2, p = 0.0, 1.0
    if keep.sum() >= 2:
        table = np.stack([ref[keep], cur[keep]])
        chi2 = _pearson_chi2(table)
        p = float(sps.chi2.sf(chi2, df=int(keep.sum()) - 1))
    return TwoSampleTest(
        name=name,
        method="chi2",
        statistic=chi2,
        p_value=p,
        effect=float(0.5 * np.abs(p_ref - p_cur).sum()),
        reference=float(p_ref[0]),
        current=float(p_cur[0]),
        n_reference=int(round(n)),
        n_current=int(round(m)),
    )


def _squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances (the Gram trick; rounding below zero clipped)."""
    d2 = (x * x).sum(axis=1)[:, None] + (y * y).sum(axis=1)[None, :] - 2.0 * (x @ y.T)
    return np.maximum(d2, 0.0)


def _median_sq_distance(z: np.ndarray, rng: np.random.Generator) -> float:
    """Median pairwise squared distance of (a random subset of at most `_MEDIAN_POINTS` of) the pooled points."""
    sub = z if len(z) <= _MEDIAN_POINTS else z[rng.choice(len(z), _MEDIAN_POINTS, replace=False)]
    d2 = _squared_distances(sub, sub)[np.triu_indices(len(sub), k=1)]
    med = float(np.median(d2)) if d2.size else 0.0
    return med if med > 0 else 1.0  # all points equal (or nearly): any bandwidth gives the same kernel


def _mmd_terms(k0: np.ndarray, row_sums: np.ndarray, total: float, labels: np.ndarray, n: int, m: int) -> np.ndarray:
    """Unbiased MMD^2 for each column of `labels` (N x B, 1.0 = reference side), from the zero-diagonal kernel.

    With a the reference indicator and b = 1 - a: a'K0a, b'K0b and a'K0b are the within- and between-sample sums
    (K0's zero diagonal drops the i = j terms), and a'K0b = a'r - a'K0a, b'K0b = T - 2a'r + a'K0a with r = K0 1 and
    T = 1'K0 1: one (N x N) @ (N x B) product per batch.
    """
    aa = (labels * (k0 @ labels)).sum(axis=0)
    ar = labels.T @ row_sums
    ab = ar - aa
    bb = total - 2.0 * ar + aa
    return aa / (n * (n - 1)) + bb / (m * (m - 1)) - 2.0 * ab / (n * m)


def mmd_test(name: str, reference: np.ndarray, current: np.ndarray, permutations: int, seed: int) -> TwoSampleTest:
    """Kernel two-sample test: unbiased MMD^2 with a Gaussian kernel, p-value by permuting the pooled sample.

    Kernel k(x, y) = exp(-|x - y|^2 / (2 s^2)) with s^2 the median pairwise squared distance of the pooled sample
    (the median heuristic, on a seeded subsample of at most 1000 points). The pooled kernel matrix (float64, N x N for
    N = n + m; memory 8 N^2 bytes, fine to a few thousand points) is computed once; each permutation relabels which
    rows are "reference", and its MMD^2 is read off K by block sums, `_BATCH` permutations per matrix product.
    p = (1 + #{permuted MMD^2 >= observed}) / (1 + permutations): never 0, exact under the null.

    statistic = effect = the observed MMD^2; reference/current are each side's mean within-sample kernel value
    (i != j): how tight each cloud is at the pooled bandwidth. Rows are points (a 1-D input is one feature).
    """
    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(current, dtype=np.float64)
    x = x.reshape(-1, 1) if x.ndim == 1 else x
    y = y.reshape(-1, 1) if y.ndim == 1 else y
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"{name}: reference {x.shape} and current {y.shape} must be (rows, features) of one width")
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError(f"{name}: the unbiased MMD^2 needs at least 2 rows a side (got {n} and {m})")
    if permutations < 0:
        raise ValueError(f"{name}: permutations must be >= 0 (got {permutations})")
    rng = np.random.default_rng(seed)
    z = np.concatenate([x, y])
    # Centre first: distances do not change, and the Gram trick loses less to rounding near the mean.
    z -= z.mean(axis=0)
    sigma2 = _median_sq_distance(z, rng)
    k0 = _squared_distances(z, z)
    k0 *= -1.0 / (2.0 * sigma2)
    np.exp(k0, out=k0)
    np.fill_diagonal(k0, 0.0)
    row_sums = k0.sum(axis=1)
    total = float(row_sums.sum())

    observed_labels = np.zeros((n + m, 1))
    observed_labels[:n] = 1.0
    observed = float(_mmd_terms(k0, row_sums, total, observed_labels, n, m)[0])
    within_ref = float((observed_labels[:, 0] @ k0 @ observed_labels[:, 0]) / (n * (n - 1)))
    within_cur = float(((1 - observed_labels[:, 0]) @ k0 @ (1 - observed_labels[:, 0])) / (m * (m - 1)))

    exceed = 0
    base = np.zeros(n + m)
    base[:n] = 1.0
    for start in range(0, permutations, _BATCH):
        batch = min(_BATCH, permutations - start)
        labels = rng.permuted(np.tile(base, (batch, 1)), axis=1).T  # each column a random reference set of size n
        exceed += int((_mmd_terms(k0, row_sums, total, np.ascontiguousarray(labels), n, m) >= observed).sum())
    return TwoSampleTest(
        name=name,
        method="mmd-permutation",
        statistic=observed,
        p_value=(1 + exceed) / (1 + permutations),
        effect=observed,
        reference=within_ref,
        current=within_cur,
        n_reference=n,
        n_current=m,
    )


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of rows predicted right (`bootstrap_ci` vectorises it, as it does sklearn's `accuracy_score`)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if y_true.size else 0.0


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Macro-F1 over integer class ids 0..n_classes-1, by one bincount of the confusion pairs.

    Equals sklearn's `f1_score(y_true, y_pred, average="macro")`: the mean over the classes present in y_true or
    y_pred of 2 TP / (support + predicted); about 50x cheaper per call, which is what 1000 bootstrap resamples need.
    """
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if t.size == 0:
        return 0.0
    confusion = np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(confusion).astype(np.float64)
    denom = confusion.sum(axis=1) + confusion.sum(axis=0)  # support + predicted count
    present = denom > 0
    return float((2.0 * tp[present] / denom[present]).mean())


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float],
    resamples: int,
    level: float,
    seed: int,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `metric(y_true, y_pred)`: resample rows with replacement `resamples` times.

    Any metric works (it is called once per resample); `accuracy` and sklearn's `accuracy_score` take a vectorised
    path with the same draws, hence the same interval. For macro-F1 pass `functools.partial(macro_f1, n_classes=k)`:
    sklearn's `f1_score` validates its inputs on every call and is several times slower per resample.
    """
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.shape[0] != p.shape[0]:
        raise ValueError(f"bootstrap_ci: {t.shape[0]} true labels but {p.shape[0]} predictions")
    if t.shape[0] == 0:
        raise ValueError("bootstrap_ci: no rows to resample")
    if not 0 < level < 1:
        raise ValueError(f"bootstrap_ci: level must be in (0, 1) (got {level})")
    if resamples < 1:
        raise ValueError(f"bootstrap_ci: resamples must be >= 1 (got {resamples})")
    rng = np.random.default_rng(seed)
    n = t.shape[0]
    vectorised = metric is accuracy or metric is accuracy_score
    correct = (t == p).astype(np.float64) if vectorised else None
    values = np.empty(resamples)
    for start in range(0, resamples, _BATCH):
        batch = min(_BATCH, resamples - start)
        idx = rng.integers(0, n, size=(batch, n))
        if correct is not None:
            values[start : start + batch] = correct[idx].mean(axis=1)
        else:
            values[start : start + batch] = [metric(t[i], p[i]) for i in idx]
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def shares(values: np.ndarray, n_classes: int) -> np.ndarray:
    """Share of each class id 0..n_classes-1 among integer `values` (sums to 1; zeros for no values)."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if v.size == 0:
        return np.zeros(n_classes)
    if v.min() < 0 or v.max() >= n_classes:
        raise ValueError(f"shares: class ids must be in 0..{n_classes - 1} (got {v.min()}..{v.max()})")
    return np.bincount(v, minlength=n_classes) / v.size


def histogram_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of `values` in each bin of `edges` (len(edges) - 1 bins; sums to 1; zeros for no values).

    Values outside [edges[0], edges[-1]] count in the end bins (clipped), so no row goes missing from the shares.
    """
    e = np.asarray(edges, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return np.zeros(len(e) - 1)
    counts, _ = np.histogram(np.clip(v, e[0], e[-1]), bins=e)
    return counts / v.size
