"""Statistics over seeds: pure functions on arrays."""

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
    is equal."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.shape} and {y.shape}")
    if not np.any(x != y):
        return float("nan")
    import scipy.stats

    return float(scipy.stats.wilcoxon(x, y, zero_method="wilcox").pvalue)


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
