"""The group strategies on their own: time zone only, random, and the experiment's split."""

import random
import statistics
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cohorts.grouping import (
    FORMING_BY_STRATEGY,
    Candidate,
    FormationQuality,
    GroupQuality,
    circular_spread,
    experiment_arm_of,
    experiment_split,
    experiment_stratum,
    formation_quality,
    group_for_late_joiner_at_random,
    groups_form,
    groups_form_at_random,
    groups_form_by,
    groups_form_by_time_zone,
    groups_reform_by_strategy,
)
from cohorts.models import GROUP_FORMING_STRATEGIES

OFFSETS = st.sampled_from([-660, -600, -480, -420, -360, -300, -240, -180, 0, 60, 120, 180, 270, 330, 480, 540, 570, 600, 720, 780, 840])
LEVELS = st.sampled_from(["none", "some", "experienced"])
STRATEGIES = sorted(FORMING_BY_STRATEGY)


def pool(specs):
    return [Candidate(key, offset, level) for key, (offset, level) in enumerate(specs)]


def keys_of(groups):
    return [[member.key for member in group] for group in groups]


def test_every_strategy_the_cohort_can_choose_forms_groups():
    assert set(FORMING_BY_STRATEGY) == {value for value, _ in GROUP_FORMING_STRATEGIES}


# --- The same size rules for every strategy -----------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(STRATEGIES), st.lists(st.tuples(OFFSETS, LEVELS), min_size=6, max_size=300), st.integers(0, 2**16))
def test_every_strategy_puts_everyone_in_one_group_within_the_bounds(strategy, specs, seed):
    candidates = pool(specs)

    groups = groups_form_by(strategy, candidates, 10, 6, 14, seed=seed)

    assert sorted(member.key for group in groups for member in group) == [c.key for c in candidates]
    assert all(6 <= len(group) <= 14 for group in groups), [len(group) for group in groups]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(STRATEGIES), st.lists(st.tuples(OFFSETS, LEVELS), min_size=20, max_size=200), st.integers(0, 1000))
def test_every_strategy_gives_the_same_groups_for_the_same_seed_whatever_the_order(strategy, specs, seed):
    candidates = pool(specs)
    first = groups_form_by(strategy, candidates, 10, 6, 14, seed=seed)
    again = groups_form_by(strategy, list(reversed(candidates)), 10, 6, 14, seed=seed)
    assert keys_of(first) == keys_of(again)


def test_random_groups_keep_near_the_target_with_no_tiny_leftover():
    candidates = pool([(0, "some")] * 101)

    sizes = [len(group) for group in groups_form_at_random(candidates, 10, 6, 14, seed=1)]

    assert sum(sizes) == 101 and min(sizes) >= 9 and max(sizes) <= 11


# --- Time zone only ---------------------------------------------------------------------------------


def realistic_pool(count=2000, seed=3):
    rng = random.Random(seed)
    weighted = [(-300, 30), (-360, 15), (-480, 10), (-240, 5), (0, 12), (60, 20), (120, 5), (330, 5), (480, 3), (540, 2), (780, 0.5)]
    return [
        Candidate(key, rng.choices([o for o, _ in weighted], [w for _, w in weighted])[0], rng.choice(["none", "some", "experienced"]))
        for key in range(count)
    ]


@pytest.mark.parametrize("form", [groups_form, groups_form_by_time_zone])
def test_both_time_zone_strategies_keep_the_spread_small(form):
    candidates = realistic_pool()

    quality = formation_quality(dict(enumerate(form(candidates, 10, 6, 14, seed=1))), learners=len(candidates))

    assert quality.ungrouped == 0 and quality.smallest >= 6 and quality.largest <= 14
    assert quality.share_within_good_spread >= 0.95


def experience_imbalance(groups) -> float:
    """How far groups' experience levels are from the pool's shares, summed over groups and levels."""
    members = [member for group in groups for member in group]
    shares = {level: count / len(members) for level, count in Counter(m.experience for m in members).items()}
    return sum(
        abs(Counter(m.experience for m in group)[level] - share * len(group)) for group in groups for level, share in shares.items()
    )


def test_time_zone_only_does_not_mix_experience_on_purpose():
    # One time zone, 60 beginners, 20 with some experience, 20 experienced: ten groups of ten.
    candidates = pool([(60, "none")] * 60 + [(60, "experienced")] * 20 + [(60, "some")] * 20)

    for seed in range(20):
        mixed = groups_form(candidates, 10, 6, 14, seed=seed)
        by_zone = groups_form_by_time_zone(candidates, 10, 6, 14, seed=seed)
        # Experience mixing gives every group its share (2 experienced, 2 with some, 6 beginners);
        # time zone only leaves it to chance, which is never that even for ten groups.
        assert experience_imbalance(mixed) == 0
        assert experience_imbalance(by_zone) > 0
    lacking = [
        sum(Counter(m.experience for m in group)["experienced"] == 0 for group in groups_form_by_time_zone(candidates, 10, 6, 14, seed=seed))
        for seed in range(20)
    ]
    assert statistics.mean(lacking) >= 0.5  # by chance, groups without an experienced member happen


def test_time_zone_only_still_groups_neighbours_in_time():
    candidates = pool([(offset, level) for offset in (-300, 60, 540) for level in ("none", "experienced") for _ in range(5)])

    groups = groups_form_by_time_zone(candidates, 10, 6, 14)

    assert all(circular_spread([m.utc_offset for m in group]) == 0 for group in groups)


# --- Random: the 2013 baseline -------------------------------------------------------------------


def test_random_groups_ignore_time_zones():
    # 50 learners in New York, 50 in Tokyo: the time zone strategies never mix them, random does.
    candidates = pool([(-300, "some")] * 50 + [(540, "some")] * 50)

    for form in (groups_form, groups_form_by_time_zone):
        assert all(len({m.utc_offset for m in group}) == 1 for group in form(candidates, 10, 6, 14, seed=3))
    shares = []
    for seed in range(30):
        groups = groups_form_at_random(candidates, 10, 6, 14, seed=seed)
        assert sum(len({m.utc_offset for m in group}) == 2 for group in groups) >= 0.8 * len(groups)
        shares.extend(sum(m.utc_offset == -300 for m in group) / len(group) for group in groups)
    # On average a group holds the pool's share of New Yorkers (one half).
    assert 0.45 <= statistics.mean(shares) <= 0.55


def test_random_groups_differ_by_seed():
    candidates = pool([(0, "some")] * 40)
    assert keys_of(groups_form_at_random(candidates, 10, 6, 14, seed=1)) != keys_of(groups_form_at_random(candidates, 10, 6, 14, seed=2))


def test_a_late_joiner_to_random_groups_goes_to_any_group_with_room_drawn_by_their_key():
    sizes = {1: 14, 2: 10, 3: 9, 4: 13}

    chosen = [group_for_late_joiner_at_random(key, sizes, maximum=14, seed=5) for key in range(400)]

    assert chosen == [group_for_late_joiner_at_random(key, dict(reversed(sizes.items())), maximum=14, seed=5) for key in range(400)]
    assert set(chosen) == {2, 3, 4}  # never the full group; each of the others sometimes
    assert group_for_late_joiner_at_random(7, {1: 14, 2: 14}, maximum=14) is None  # all full: a new group


# --- The experiment's split ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(OFFSETS, LEVELS), min_size=0, max_size=300), st.integers(0, 2**32))
def test_the_split_is_balanced_overall_and_within_each_band_and_level(specs, seed):
    candidates = pool(specs)
    strata = {c.key: experiment_stratum(c) for c in candidates}

    arm_a, arm_b = experiment_split([c.key for c in candidates], seed, strata=strata)

    assert sorted(arm_a + arm_b) == [c.key for c in candidates]
    assert abs(len(arm_a) - len(arm_b)) <= 1
    in_a, in_b = Counter(strata[key] for key in arm_a), Counter(strata[key] for key in arm_b)
    assert all(abs(in_a[stratum] - in_b[stratum]) <= 1 for stratum in set(strata.values()))


def test_the_split_is_reproducible_from_its_seed_whatever_the_order():
    candidates = realistic_pool(300)
    keys = [c.key for c in candidates]
    strata = {c.key: experiment_stratum(c) for c in candidates}
    shuffled = list(keys)
    random.Random(1).shuffle(shuffled)

    first = experiment_split(keys, 12345, strata=strata)

    assert experiment_split(shuffled, 12345, strata=dict(reversed(strata.items()))) == first
    assert experiment_split(keys, 12346, strata=strata) != first


@pytest.mark.parametrize(
    "strata",
    [
        None,  # one stratum
        {key: key % 3 for key in range(15)},  # strata of five: one left over in each
        {key: key for key in range(15)},  # strata of one: everyone left over
    ],
)
def test_over_many_seeds_each_learner_is_in_each_arm_about_half_the_time(strata):
    keys = list(range(15))
    in_a = Counter()
    for seed in range(2000):
        arm_a, _ = experiment_split(keys, seed, strata=strata)
        in_a.update(arm_a)

    assert all(0.44 <= in_a[key] / 2000 <= 0.56 for key in keys), in_a


def test_a_late_joiners_arm_is_the_same_every_time_and_half_go_to_each():
    arms = [experiment_arm_of(key, seed=99) for key in range(2000)]

    assert arms == [experiment_arm_of(key, seed=99) for key in range(2000)]
    assert set(arms) == {0, 1} and 0.45 <= sum(arms) / len(arms) <= 0.55
    assert arms != [experiment_arm_of(key, seed=100) for key in range(2000)]


# --- Re-forming per strategy ---------------------------------------------------------------------


def test_reforming_never_moves_a_member_to_a_group_of_another_strategy():
    groups = {
        1: [Candidate(i, 60, "some") for i in range(3)],  # timezone: fell below 6
        2: [Candidate(100 + i, 60, "some") for i in range(8)],  # timezone: room for 6 more
        3: [Candidate(200 + i, 60, "some") for i in range(7)],  # random: room, same zone, another arm
        4: [Candidate(300 + i, 60, "some") for i in range(3)],  # random: fell below 6
    }
    strategies = {1: "timezone", 2: "timezone", 3: "random", 4: "random"}

    moves, dissolved = groups_reform_by_strategy(groups, strategies, minimum=6, maximum=14)

    assert {moves[i] for i in range(3)} == {2} and {moves[300 + i] for i in range(3)} == {3}
    assert dissolved == {1, 4}


def test_random_groups_re_form_regardless_of_time_zone():
    groups = {
        1: [Candidate(i, -300, "some") for i in range(3)],  # fell below 6, in New York
        2: [Candidate(100 + i, 540, "some") for i in range(8)],  # in Tokyo, room for 6 more
    }

    assert groups_reform_by_strategy(groups, {1: "timezone", 2: "timezone"}, minimum=6, maximum=14) == ({}, set())
    moves, dissolved = groups_reform_by_strategy(groups, {1: "random", 2: "random"}, minimum=6, maximum=14)
    assert moves == {0: 2, 1: 2, 2: 2} and dissolved == {1}


# --- The quality report per strategy ---------------------------------------------------------------


def test_the_quality_report_splits_by_strategy():
    quality = FormationQuality(
        groups=[
            GroupQuality("g1", 10, 1.0, {"none": 5, "some": 5}, "timezone"),
            GroupQuality("g2", 8, 9.0, {"none": 8}, "random"),
            GroupQuality("g3", 6, 0.0, {"some": 6}, "timezone"),
        ],
        learners=25, ungrouped=1, seed=7,
    )

    parts = quality.per_strategy()

    assert list(parts) == ["random", "timezone"]
    assert (len(parts["timezone"].groups), parts["timezone"].learners, parts["timezone"].smallest) == (2, 16, 6)
    assert parts["timezone"].share_mixing_experience == 0.5 and parts["random"].share_within_good_spread == 0
    assert parts["random"].seed == 7
