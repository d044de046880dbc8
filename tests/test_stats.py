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


def test_sequence_means():
    np.testing.assert_allclose(stats.sequence_means([1.0, 2.0, 3.0, 4.0], [0, 0, 1, 2]), [1.5, 3.0, 4.0])
    np.testing.assert_allclose(stats.sequence_means([1.0, 5.0, 3.0], [7, 2, 7]), [5.0, 2.0])  # ids sorted
    with pytest.raises(ValueError, match="differ in shape"):
        stats.sequence_means([1.0, 2.0], [0])


def test_sign_flip_exact_by_hand():
    # differences 4, 2, -1: the 8 sign assignments sum to +-7, +-5, +-3, +-1; observed |4+2-1| = 5,
    # reached or passed by 7, 5, -5, -7: p = 4/8
    assert stats.sign_flip_p([4.0, 2.0, -1.0]) == 0.5
    # 1, 2, 4: only +-7 reach the observed 7: p = 2/8; zero differences stay in the sample and
    # change nothing (flipping a zero gives the same sum)
    assert stats.sign_flip_p([1.0, 2.0, 4.0]) == 0.25
    assert stats.sign_flip_p([1.0, 0.0, 2.0, 0.0, 4.0]) == 0.25
    assert stats.sign_flip_p([0.0, 0.0]) == 1.0  # no difference at all
    # exact whenever 2^m <= n_flips, whatever the generator
    assert stats.sign_flip_p([1.0, 2.0, 4.0], np.random.default_rng(5), n_flips=8) == 0.25


def _exact_sign_flip_p(d):
    """Exact p for integer differences by counting the sums of every sign assignment."""
    counts = {0: 1}
    for x in d:
        nxt = {}
        for s, c in counts.items():
            for v in (s + x, s - x):
                nxt[v] = nxt.get(v, 0) + c
        counts = nxt
    obs = abs(sum(d))
    return sum(c for s, c in counts.items() if abs(s) >= obs) / 2 ** len(d)


def test_sign_flip_monte_carlo_against_the_exact_count():
    rng = np.random.default_rng(1)
    d = (rng.integers(1, 6, size=40) * rng.choice([-1, 1], size=40, p=[0.4, 0.6])).tolist()
    exact = _exact_sign_flip_p(d)
    n = 20_000
    p = stats.sign_flip_p(d, np.random.default_rng(2), n_flips=n)
    assert 0.001 < exact < 0.5 and abs(p - exact) < 4 * np.sqrt(exact * (1 - exact) / n)
    assert p == stats.sign_flip_p(d, np.random.default_rng(2), n_flips=n)  # seeded: reproducible
    # the +1 correction: no assignment out of 1,000 reaches all-positive differences (exact p
    # 2 / 2^30), and the Monte-Carlo p is 1 / 1,001, never 0
    assert stats.sign_flip_p(np.ones(30), np.random.default_rng(3), n_flips=1000) == 1 / 1001


def test_rows_and_sequences_disagree():
    """One sequence of 50 rows, all favouring A, and five one-row sequences favouring B: over
    rows A wins by far; over sequences the per-sequence differences are +1 and five -1, and
    |sum| = 4 is reached by 14 of the 64 sign assignments (at most one +, or at least five)."""
    x = np.array([1.0] * 50 + [0.0] * 5)  # A's per-row metric
    y = np.array([0.0] * 50 + [1.0] * 5)  # B's
    sequence = np.array([0] * 50 + [1, 2, 3, 4, 5])
    assert stats.wilcoxon_p(x, y) < 1e-6
    assert stats.sequence_sign_flip_p(x, y, sequence) == pytest.approx(14 / 64)
    with pytest.raises(ValueError, match="differ in length"):
        stats.sequence_sign_flip_p(x, y[:3], sequence)
