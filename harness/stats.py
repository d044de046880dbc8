"""Statistics over seeds: pure functions on arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
