"""Statistics over seeds against numpy/hand-computed values."""

import pytest

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
