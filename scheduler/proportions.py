"""The arithmetic of the outcome report (scheduler/outcomes.py): a share's 95% confidence
interval, and whether two shares differ by more than chance explains. Pure functions of counts:
no database, no Django, tested against values worked out by hand.
"""

import math
from dataclasses import dataclass

# The normal distribution's 97.5th percentile: a two-sided 95% interval, a test at the 5% level.
Z_95 = 1.959963984540054
SIGNIFICANCE_LEVEL = 0.05
# The normal approximation behind the z-test is trusted only when each share rests on at least
# this many learners on either side (active and not active); below it the report says so.
SMALLEST_COUNT_FOR_TEST = 5


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of the share successes/trials (95% by default), as
    (low, high) between 0 and 1; None when there are no trials.

    Unlike the textbook p ± z·sqrt(p(1-p)/n), it stays inside [0, 1] and is honest at 0 or n
    successes and for small n, which a round's groups often are."""
    if trials <= 0:
        return None
    if not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes out of {trials} trials")
    share = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (share + z2 / (2 * trials)) / denominator
    half_width = z * math.sqrt(share * (1 - share) / trials + z2 / (4 * trials * trials)) / denominator
    # At 0 or n successes the bound is exactly 0 or 1; rounding must not leave it a hair off.
    low = 0.0 if successes == 0 else max(0.0, centre - half_width)
    high = 1.0 if successes == trials else min(1.0, centre + half_width)
    return low, high


@dataclass(frozen=True)
class ProportionsComparison:
    """Two shares compared by a two-sided two-proportion z-test (pooled standard error)."""

    difference: float  # first share minus second
    z: float | None  # None when the test cannot be run (see too_small)
    p_value: float | None
    too_small: bool  # fewer than SMALLEST_COUNT_FOR_TEST on some side: no conclusion drawn

    @property
    def distinguishable(self) -> bool:
        """The difference is larger than chance would explain at the 5% level."""
        return not self.too_small and self.p_value is not None and self.p_value < SIGNIFICANCE_LEVEL


def two_proportions_compare(successes_a: int, trials_a: int, successes_b: int, trials_b: int) -> ProportionsComparison:
    """Compare a = successes_a/trials_a with b = successes_b/trials_b.

    z = (a - b) / sqrt(p(1-p)(1/n_a + 1/n_b)), p the pooled share; the p-value is two-sided,
    erfc(|z|/√2). `too_small` when either group has fewer than SMALLEST_COUNT_FOR_TEST
    successes or failures (the normal approximation does not hold): z and p are then None.
    Both shares equal to 0 or to 1 give z = 0, p = 1."""
    if trials_a <= 0 or trials_b <= 0:
        raise ValueError("each group needs at least one trial")
    share_a, share_b = successes_a / trials_a, successes_b / trials_b
    difference = share_a - share_b
    sides = [successes_a, trials_a - successes_a, successes_b, trials_b - successes_b]
    if min(sides) < SMALLEST_COUNT_FOR_TEST:
        return ProportionsComparison(difference, None, None, too_small=True)
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    standard_error = math.sqrt(pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b))
    z = difference / standard_error
    return ProportionsComparison(difference, z, math.erfc(abs(z) / math.sqrt(2)), too_small=False)
