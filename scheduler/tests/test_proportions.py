"""The outcome report's arithmetic against values worked out by hand (z = 1.96, to four places)."""

import pytest

from scheduler.proportions import two_proportions_compare, wilson_interval


@pytest.mark.parametrize("successes, trials, low, high", [
    # 8 of 10: p = 0.8, z² = 3.8415; denominator 1 + 3.8415/10 = 1.38415;
    # centre (0.8 + 3.8415/20) / 1.38415 = 0.71674; half-width 1.96·√(0.016 + 3.8415/400) / 1.38415 = 0.22658.
    (8, 10, 0.4902, 0.9433),
    # 15 of 20: centre (0.75 + 0.09604) / 1.19207 = 0.70973; half-width 1.96·√(0.009375 + 0.00240) / 1.19207 = 0.17842.
    (15, 20, 0.5313, 0.8881),
    # 8 of 20: centre (0.4 + 0.09604) / 1.19207 = 0.41612; half-width 1.96·√(0.012 + 0.00240) / 1.19207 = 0.19731.
    (8, 20, 0.2188, 0.6134),
    # None of 10: exactly 0 below; above, 2·0.19207 / 1.38415 = 0.27753.
    (0, 10, 0.0, 0.2775),
    # All of 10: the mirror image.
    (10, 10, 0.7225, 1.0),
])
def test_the_wilson_interval(successes, trials, low, high):
    assert wilson_interval(successes, trials) == (pytest.approx(low, abs=5e-5), pytest.approx(high, abs=5e-5))


def test_no_learners_have_no_interval_and_impossible_counts_are_refused():
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_two_shares_that_differ_more_than_chance_explains():
    # 15/20 against 7/20: pooled 22/40 = 0.55, standard error √(0.55·0.45·(1/20 + 1/20)) = 0.15732,
    # z = 0.4 / 0.15732 = 2.5426, two-sided p = erfc(2.5426/√2) = 0.0110.
    comparison = two_proportions_compare(15, 20, 7, 20)

    assert comparison.difference == pytest.approx(0.4)
    assert comparison.z == pytest.approx(2.5426, abs=1e-4)
    assert comparison.p_value == pytest.approx(0.0110, abs=1e-4)
    assert comparison.distinguishable and not comparison.too_small


def test_two_shares_whose_difference_chance_explains():
    # 12/20 against 9/20: pooled 0.525, standard error √(0.525·0.475·0.1) = 0.15792,
    # z = 0.15 / 0.15792 = 0.9499, p = 0.3422.
    comparison = two_proportions_compare(12, 20, 9, 20)

    assert comparison.z == pytest.approx(0.9499, abs=1e-4)
    assert comparison.p_value == pytest.approx(0.3422, abs=1e-4)
    assert not comparison.distinguishable


@pytest.mark.parametrize("counts", [(6, 20, 4, 20), (16, 20, 18, 20), (3, 4, 1, 4)])
def test_fewer_than_five_on_either_side_is_too_small_to_tell(counts):
    comparison = two_proportions_compare(*counts)

    assert comparison.too_small and comparison.z is None and comparison.p_value is None
    assert not comparison.distinguishable
