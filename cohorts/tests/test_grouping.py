"""The grouping algorithm, on its own: sizes, time zones, wrap-around, experience, determinism."""

import datetime
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from cohorts.grouping import (
    Candidate,
    circular_spread,
    formation_quality,
    group_centre_offset,
    group_for_late_joiner,
    groups_form,
    groups_reform,
    utc_offset_minutes,
)

OFFSETS = st.sampled_from([-660, -600, -480, -420, -360, -300, -240, -180, 0, 60, 120, 180, 270, 330, 480, 540, 570, 600, 720, 780, 840])
LEVELS = st.sampled_from(["none", "some", "experienced"])


def pool(specs):
    return [Candidate(key, offset, level) for key, (offset, level) in enumerate(specs)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(OFFSETS, LEVELS), min_size=6, max_size=400), st.integers(0, 2**16))
def test_every_learner_is_in_exactly_one_group_within_the_size_bounds(specs, seed):
    candidates = pool(specs)

    groups = groups_form(candidates, target=10, minimum=6, maximum=14, seed=seed)

    assert sorted(member.key for group in groups for member in group) == [c.key for c in candidates]
    assert all(6 <= len(group) <= 14 for group in groups), [len(group) for group in groups]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(OFFSETS, LEVELS), min_size=1, max_size=5))
def test_a_pool_smaller_than_a_group_is_one_group(specs):
    groups = groups_form(pool(specs), target=10, minimum=6, maximum=14)
    assert len(groups) == 1 and len(groups[0]) == len(specs)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(OFFSETS, LEVELS), min_size=20, max_size=300), st.integers(0, 1000))
def test_the_same_seed_gives_the_same_groups(specs, seed):
    candidates = pool(specs)
    first = groups_form(candidates, 10, 6, 14, seed=seed)
    again = groups_form(list(reversed(candidates)), 10, 6, 14, seed=seed)
    assert [[m.key for m in group] for group in first] == [[m.key for m in group] for group in again]


def test_neighbours_in_time_are_grouped_together():
    # Ten people in each of three far-apart zones: three groups, each of one zone.
    candidates = pool([(offset, "some") for offset in (-300, 60, 540) for _ in range(10)])

    groups = groups_form(candidates, 10, 6, 14)

    assert sorted({m.utc_offset for m in group}.pop() for group in groups) == [-300, 60, 540]
    assert all(circular_spread([m.utc_offset for m in group]) == 0 for group in groups)


def test_wrap_around_utc_plus_13_and_minus_11_are_the_same_time():
    assert circular_spread([780, -660]) == 0
    assert circular_spread([720, -720]) == 0
    assert circular_spread([840, -600]) == 0  # Kiribati and Hawaii
    assert circular_spread([-600, 600]) == 240  # UTC-10 and UTC+10: 4 hours apart the short way
    candidates = pool([(780, "none")] * 5 + [(-660, "some")] * 5 + [(0, "none")] * 10)

    groups = groups_form(candidates, 10, 6, 14)

    pacific = [group for group in groups if {m.utc_offset for m in group} <= {780, -660}]
    assert len(pacific) == 1 and len(pacific[0]) == 10


def test_experience_is_mixed_within_a_time_band():
    candidates = pool([(60, "none")] * 60 + [(60, "experienced")] * 20 + [(60, "some")] * 20)

    groups = groups_form(candidates, 10, 6, 14, seed=7)

    for group in groups:
        levels = Counter(member.experience for member in group)
        assert levels["experienced"] >= 1 and levels["some"] >= 1, levels
        assert levels["none"] <= 7


def test_a_good_share_of_groups_keep_within_two_hours_on_a_realistic_pool():
    import random

    rng = random.Random(3)
    weighted = [(-300, 30), (-360, 15), (-480, 10), (-240, 5), (0, 12), (60, 20), (120, 5), (330, 5), (480, 3), (540, 2), (780, 0.5)]
    candidates = [
        Candidate(key, rng.choices([o for o, _ in weighted], [w for _, w in weighted])[0], rng.choice(["none", "some", "experienced"]))
        for key in range(2000)
    ]

    groups = groups_form(candidates, 10, 6, 14, seed=1)
    quality = formation_quality(dict(enumerate(groups)), learners=len(candidates))

    assert quality.ungrouped == 0
    assert quality.smallest >= 6 and quality.largest <= 14
    assert quality.share_within_good_spread >= 0.95


def test_offsets_follow_daylight_saving_at_the_start_date():
    # Europe moves its clocks on 29 March 2026; the United States already did on 8 March.
    assert utc_offset_minutes("Europe/London", datetime.date(2026, 3, 28)) == 0
    assert utc_offset_minutes("Europe/London", datetime.date(2026, 3, 29)) == 60
    assert utc_offset_minutes("America/New_York", datetime.date(2026, 3, 2)) == -300
    assert utc_offset_minutes("America/New_York", datetime.date(2026, 3, 9)) == -240
    assert utc_offset_minutes("Asia/Kolkata", datetime.date(2026, 3, 29)) == 330


def test_a_late_joiner_goes_to_the_group_of_their_band_with_room():
    groups = {1: [60] * 14, 2: [60, 60, 120] * 3, 3: [-300] * 8}

    assert group_for_late_joiner(60, groups, maximum=14) == 2  # group 1 is full
    assert group_for_late_joiner(-300, groups, maximum=14) == 3
    assert group_for_late_joiner(540, groups, maximum=14) is None  # nobody near: a new group


def test_reforming_merges_small_groups_and_keeps_the_others_in_place():
    groups = {
        1: pool([(60, "some")] * 9),
        2: [Candidate(100 + i, 60, "none") for i in range(3)],  # fell below 6
        3: [Candidate(200 + i, -300, "none") for i in range(8)],
        4: [Candidate(300 + i, 540, "none") for i in range(2)],  # fell below 6, alone in its band
        5: [Candidate(400 + i, 600, "some") for i in range(3)],  # fell below 6, near group 4
    }

    moves, dissolved = groups_reform(groups, minimum=6, maximum=14)

    assert {moves[100], moves[101], moves[102]} == {1}
    assert all(key not in moves for key in range(9)) and all(200 + i not in moves for i in range(8))
    assert dissolved >= {2}
    merged = {moves.get(300, 4), moves.get(301, 4), moves.get(400, 5), moves.get(401, 5), moves.get(402, 5)}
    assert len(merged) == 1  # the two small Asian groups became one


def test_quiet_members_do_not_count_toward_a_groups_size_but_keep_their_seat():
    groups = {
        1: [Candidate(i, 60, "some") for i in range(8)],  # 8 members, 1 of them quiet: 7 active
        2: [Candidate(100 + i, 60, "none") for i in range(7)],  # 7 members, 4 of them quiet: 3 active
        3: [Candidate(200 + i, 60, "some") for i in range(6)],  # 6 members, all active
    }
    quiet = frozenset({100, 101, 102, 103, 0})

    assert groups_reform(groups, minimum=6, maximum=14) == ({}, set())  # counting everyone, nobody is too few

    moves, dissolved = groups_reform(groups, minimum=6, maximum=14, quiet=quiet)

    # Group 2 has too few active members: all seven go to groups 1 and 3, which have room
    # counted with their own quiet members; those groups stay as they are.
    assert set(moves) == {100 + i for i in range(7)} and set(moves.values()) <= {1, 3}
    assert dissolved == {2}


def test_where_room_runs_out_the_quiet_members_are_left_behind():
    groups = {
        1: [Candidate(i, 60, "some") for i in range(12)],  # room for 2 more (maximum 14)
        2: [Candidate(100 + i, 60, "none") for i in range(5)],  # 100 and 101 quiet
    }

    moves, dissolved = groups_reform(groups, minimum=6, maximum=14, quiet=frozenset({100, 101}))

    assert set(moves) <= {102, 103, 104} and len(moves) == 2 and dissolved == set()


def test_a_group_centre_lies_on_its_own_arc():
    assert group_centre_offset([780, 780, -660]) in (780, -660)
    assert group_centre_offset([-300, -300, -240]) == -300
