"""Statistics over seeds, rows and sequences: pure functions on arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# scipy.stats is imported where a test runs: it takes over a second to import, and every
# harness.run process (which only formats means) would pay it


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of ``values`` [n_seeds]."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("mean_std of no values")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def format_mean_std(values: Sequence[float], scale: float = 100.0, digits: int = 2) -> str:
    """``"mean ± std"`` of ``values`` times ``scale`` (default: fractions shown in %); a single
    value has no spread to show and is written ``"mean (1 seed)"``."""
    m, s = mean_std(np.asarray(values, dtype=np.float64) * scale)
    if len(values) == 1:
        return f"{m:.{digits}f} (1 seed)"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances) between two samples of seeds.

    NaN when it is undefined (fewer than two values on a side, or no variance on either)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or b.size < 2 or (a.var() == 0 and b.var() == 0):
        return float("nan")
    import scipy.stats

    return float(scipy.stats.ttest_ind(a, b, equal_var=False).pvalue)


def wilcoxon_p(x: Sequence[float], y: Sequence[float]) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test of paired per-row values ``x`` and
    ``y`` [n_rows] (rows where they are equal are dropped, Wilcoxon's own convention; normal
    approximation with tie correction for large samples, as scipy chooses). NaN when every pair
    is equal. It takes rows as independent: for test rows that are prefixes of the same
    sequences, :func:`sequence_sign_flip_p` is the test (Table 1's †)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.shape} and {y.shape}")
    if not np.any(x != y):
        return float("nan")
    import scipy.stats

    return float(scipy.stats.wilcoxon(x, y, zero_method="wilcox").pvalue)


#: Monte-Carlo sign flips of :func:`sign_flip_p` (its smallest p is 1 / (N_FLIPS + 1))
N_FLIPS = 100_000
_FLIP_BLOCK = 1 << 22  # sign draws per block (flips x differences) of the Monte-Carlo test


def sequence_means(values: Sequence[float], sequence: Sequence[int]) -> np.ndarray:
    """[n_sequences] mean of the per-row ``values`` [n_rows] over the rows of each sequence,
    ``sequence`` [n_rows] giving each row's sequence id; sequences in ascending id order."""
    v, seq = np.asarray(values, dtype=np.float64), np.asarray(sequence)
    if v.shape != seq.shape or v.ndim != 1:
        raise ValueError(f"per-row values {v.shape} and sequence ids {seq.shape} differ in shape")
    _, inverse = np.unique(seq, return_inverse=True)
    return np.bincount(inverse, weights=v) / np.bincount(inverse)


def sign_flip_p(diff: Sequence[float], rng: np.random.Generator | None = None,
                n_flips: int = N_FLIPS) -> float:
    """Two-sided p-value of the paired sign-flip permutation test on the differences ``diff`` [n].

    Under the null each difference is as likely to carry either sign; the statistic is
    |sum of the differences|, and p is the share of sign assignments whose |sum| is at least the
    observed one. A zero difference contributes nothing to the statistic (flipping it changes
    nothing) but stays in the sample. Exact, over all 2^m assignments of the m non-zero
    differences, when 2^m <= ``n_flips``; otherwise ``n_flips`` random assignments drawn from
    ``rng`` (default: seed 0), p = (1 + hits) / (1 + n_flips), never 0. 1.0 when every
    difference is zero."""
    d = np.asarray(diff, dtype=np.float64)
    if d.ndim != 1 or not np.all(np.isfinite(d)):
        raise ValueError(f"sign_flip_p needs a finite 1-d array of differences, got shape {d.shape}")
    d = d[d != 0]
    m = d.size
    if m == 0:
        return 1.0
    observed = abs(d.sum())
    tol = 1e-12 * np.abs(d).sum()  # sums of the same terms in another order differ by rounding
    if 2.0 ** m <= n_flips:
        bits = (np.arange(2 ** m)[:, None] >> np.arange(m)[None, :]) & 1  # [2^m, m]
        sums = (1 - 2 * bits) @ d  # [2^m]
        return float(np.mean(np.abs(sums) >= observed - tol))
    rng = np.random.default_rng(0) if rng is None else rng
    hits, block, width = 0, max(1, _FLIP_BLOCK // m), (m + 7) // 8
    for start in range(0, n_flips, block):
        k = min(block, n_flips - start)
        raw = np.frombuffer(rng.bytes(k * width), dtype=np.uint8).reshape(k, width)
        flips = np.unpackbits(raw, axis=1, count=m)  # [k, m]: 1 flips the difference's sign
        sums = d.sum() - 2.0 * (flips @ d)  # [k]
        hits += int(np.count_nonzero(np.abs(sums) >= observed - tol))
    return (1 + hits) / (1 + n_flips)


def sequence_sign_flip_p(x: Sequence[float], y: Sequence[float], sequence: Sequence[int],
                         rng: np.random.Generator | None = None, n_flips: int = N_FLIPS) -> float:
    """Two-sided p-value of the paired test whose unit is the sequence: per-row values ``x`` and
    ``y`` [n_rows] of two models on the same rows, ``sequence`` [n_rows] each row's sequence id;
    each sequence's mean of x - y over its rows goes into :func:`sign_flip_p`."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.shape} and {y.shape}")
    return sign_flip_p(sequence_means(x - y, sequence), rng, n_flips)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input order.

    Sorted ascending, the i-th of m p-values (0-based) becomes max over j <= i of
    min(1, (m - j) p_(j)). NaN entries are left out of the family and stay NaN."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = idx.size
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def relative_improvement(ours: float, reference: float) -> float:
    """(ours - reference) / reference; NaN when the reference is 0."""
    return float("nan") if reference == 0 else (ours - reference) / reference
