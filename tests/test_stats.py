"""Statistics over seeds against numpy/hand-computed values."""

import numpy as np
import pytest
import scipy.stats

from harness import stats
from harness.stats import format_mean_std, mean_std


def test_mean_and_sample_std():
    m, s = mean_std([0.01, 0.02, 0.03])
    assert m == pytest.approx(0.02)
    assert s == pytest.approx(0.01)  # sqrt(((-.01)^2 + 0 + .01^2) / 2)
    assert mean_std([0.5]) == (0.5, 0.0)
    with pytest.raises(ValueError):
        mean_std([])


def test_format_in_percent():
    assert format_mean_std([0.0189, 0.0211]) == "2.00 ± 0.16"
    assert format_mean_std([0.0177]) == "1.77 (1 seed)"  # no sample std from one value


def test_welch_against_the_formula():
    a, b = [0.020, 0.022, 0.019, 0.024, 0.021], [0.017, 0.018, 0.016, 0.019, 0.020]
    ma, mb = np.mean(a), np.mean(b)
    va, vb = np.var(a, ddof=1) / 5, np.var(b, ddof=1) / 5
    t = (ma - mb) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 4)  # Welch-Satterthwaite
    assert stats.welch_p(a, b) == pytest.approx(2 * scipy.stats.t.sf(abs(t), df), rel=1e-10)
    assert np.isnan(stats.welch_p([0.1], b)) and np.isnan(stats.welch_p([1, 1], [2, 2]))


def test_wilcoxon_by_hand_on_a_small_exact_case():
    # differences 1, 2, -3, 4, 5 (one zero pair dropped): W+ = 1+2+4+5 = 12, W- = 3;
    # exact two-sided p = 2 * P(W- <= 3) = 2 * 5/32 (subsets of 1..5 summing to <= 3: {}, {1},
    # {2}, {3}, {1,2})
    x = [1.0, 2.0, 0.0, 4.0, 5.0, 7.0]
    y = [0.0, 0.0, 3.0, 0.0, 0.0, 7.0]
    assert stats.wilcoxon_p(x, y) == pytest.approx(2 * 5 / 32)
    assert np.isnan(stats.wilcoxon_p([1.0, 2.0], [1.0, 2.0]))
    with pytest.raises(ValueError, match="differ in length"):
        stats.wilcoxon_p([1.0], [1.0, 2.0])


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.04 (m = 3): 0.03, max(0.03, 0.04), max(0.04, 0.04)
    assert stats.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    # monotone and capped at 1; NaN stays out of the family (m = 2 here)
    assert stats.holm([0.6, float("nan"), 0.3]) == pytest.approx([0.6, float("nan"), 0.6], nan_ok=True)
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_relative_improvement():
    assert stats.relative_improvement(2.26, 2.03) == pytest.approx(0.1133, abs=1e-4)
    assert np.isnan(stats.relative_improvement(1.0, 0.0))
