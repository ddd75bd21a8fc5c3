"""Sorting a cohort's learners into small study groups: the algorithm, free of the database.

Goals, in order:
1. every group's size is within [minimum, maximum], with no tiny leftover group;
2. members are close in time zone (their UTC offset at the cohort's start), so that a
   weekly live meeting is possible: each group's offset spread is kept small, on a circle
   (UTC+13 and UTC-11 are the same time of day, 0 hours apart);
3. within that, each group mixes experience levels as evenly as the pool allows.

How: learners are laid out around the clock by UTC offset, cut open at the widest empty
stretch of hours, and within each offset the experience levels are interleaved. A dynamic
programme then cuts that line into contiguous groups of allowed sizes, minimising each
group's spread (a spread over two hours costs a lot) and its distance from the target size.
Deterministic for a given seed. O(n log n) time for n learners, O(n) memory.
"""

import datetime
import functools
import random
import zoneinfo
from collections import Counter, defaultdict
from dataclasses import dataclass

MINUTES_PER_DAY = 24 * 60
# A weekly live meeting works when members' clocks are at most this far apart.
GOOD_SPREAD_MINUTES = 120
EXPERIENCE_ORDER = ("none", "some", "experienced")

# Costs of the dynamic programme, in "minutes of spread": a group beyond a good spread is
# as bad as 24 hours of spread, and each member away from the target size costs 5 minutes.
_OVER_GOOD_SPREAD_COST = MINUTES_PER_DAY
_SIZE_DEVIATION_COST = 5


@dataclass(frozen=True)
class Candidate:
    """One learner to be grouped: an opaque key (their enrollment id), offset and experience."""

    key: int
    utc_offset: int  # minutes east of UTC at the cohort's start
    experience: str


@functools.lru_cache(maxsize=2048)
def utc_offset_minutes(timezone_name: str, on: datetime.date) -> int:
    """A time zone's UTC offset in minutes at noon UTC on a date (daylight saving included)."""
    moment = datetime.datetime.combine(on, datetime.time(12), tzinfo=datetime.UTC)
    return int(moment.astimezone(zoneinfo.ZoneInfo(timezone_name)).utcoffset().total_seconds() // 60)


def circular_spread(offsets) -> int:
    """Minutes between the earliest and latest clock in a set of offsets, going round the dial.

    The shortest arc that holds them all: 24 hours minus the widest gap between neighbours.
    """
    points = sorted({offset % MINUTES_PER_DAY for offset in offsets})
    if len(points) < 2:
        return 0
    gaps = [later - earlier for earlier, later in zip(points, points[1:])]
    gaps.append(points[0] + MINUTES_PER_DAY - points[-1])
    return MINUTES_PER_DAY - max(gaps)


def _around_the_clock(candidates: list[Candidate]) -> list[tuple[int, Candidate]]:
    """Candidates on a line of minutes, cut open at the widest gap between offsets."""
    points = sorted({candidate.utc_offset % MINUTES_PER_DAY for candidate in candidates})
    widest_gap_ends_at = points[0]
    widest = points[0] + MINUTES_PER_DAY - points[-1]
    for earlier, later in zip(points, points[1:]):
        if later - earlier > widest:
            widest, widest_gap_ends_at = later - earlier, later
    line = []
    for candidate in candidates:
        position = candidate.utc_offset % MINUTES_PER_DAY
        if position < widest_gap_ends_at:
            position += MINUTES_PER_DAY
        line.append((position, candidate))
    return line


def _level_rank(level: str) -> tuple[int, str]:
    return (EXPERIENCE_ORDER.index(level) if level in EXPERIENCE_ORDER else len(EXPERIENCE_ORDER), level)


def _interleaved(line: list[tuple[int, Candidate]], seed: int) -> list[tuple[int, Candidate]]:
    """Sort by position; within a position, spread each experience level evenly along it.

    Each level's members get evenly spaced ranks between 0 and 1, so any stretch of the
    line carries the levels in the proportions the whole position has.
    """
    rng = random.Random(seed)
    by_position: dict[int, dict[str, list[Candidate]]] = defaultdict(lambda: defaultdict(list))
    for position, candidate in line:
        by_position[position][candidate.experience].append(candidate)
    ordered = []
    for position in sorted(by_position):
        ranked = []
        # Levels and members in a fixed order before shuffling: the input's order must not matter.
        for level_order, level in enumerate(sorted(by_position[position], key=_level_rank)):
            members = sorted(by_position[position][level], key=lambda candidate: candidate.key)
            rng.shuffle(members)
            ranked.extend(((index + 0.5) / len(members), level_order, candidate) for index, candidate in enumerate(members))
        ranked.sort(key=lambda item: (item[0], item[1]))
        ordered.extend((position, candidate) for _, _, candidate in ranked)
    return ordered


def _sizes(positions: list[int], target: int, minimum: int, maximum: int) -> list[int] | None:
    """Group sizes cutting `positions` (sorted) at least cost, or None when no cut fits the bounds."""
    count = len(positions)
    infinity = float("inf")
    best = [infinity] * (count + 1)
    chosen = [0] * (count + 1)
    best[0] = 0.0
    for end in range(minimum, count + 1):
        last = positions[end - 1]
        best_here, size_here = infinity, 0
        for size in range(minimum, min(maximum, end) + 1):
            before = best[end - size]
            if before == infinity:
                continue
            spread = last - positions[end - size]
            cost = before + spread + abs(size - target) * _SIZE_DEVIATION_COST
            if spread > GOOD_SPREAD_MINUTES:
                cost += _OVER_GOOD_SPREAD_COST
            if cost < best_here:
                best_here, size_here = cost, size
        best[end], chosen[end] = best_here, size_here
    if best[count] == infinity:
        return None
    sizes, end = [], count
    while end:
        sizes.append(chosen[end])
        end -= chosen[end]
    return sizes[::-1]


def _even_sizes(count: int, maximum: int) -> list[int]:
    groups = -(-count // maximum)
    return [count // groups + (1 if index < count % groups else 0) for index in range(groups)]


def groups_form(candidates: list[Candidate], target: int, minimum: int, maximum: int, seed: int = 0) -> list[list[Candidate]]:
    """Sort candidates into groups (lists of candidates), by the goals in this module's docstring.

    A pool smaller than `minimum` becomes one group: nobody is left out.
    """
    if not candidates:
        return []
    ordered = _interleaved(_around_the_clock(candidates), seed)
    if len(ordered) <= maximum:
        return [[candidate for _, candidate in ordered]]
    sizes = _sizes([position for position, _ in ordered], target, minimum, maximum)
    if sizes is None:  # bounds too tight for this pool size (e.g. 8 people, groups of 6-7)
        sizes = _even_sizes(len(ordered), maximum)
    groups, start = [], 0
    for size in sizes:
        groups.append([candidate for _, candidate in ordered[start : start + size]])
        start += size
    return groups


def group_centre_offset(offsets: list[int]) -> int:
    """A representative offset of a group: its middle member's, on the group's own arc."""
    points = sorted(offset % MINUTES_PER_DAY for offset in offsets)
    spread = circular_spread(points)
    # Unroll the circle so that the group's arc is contiguous, then take the median.
    for start in range(len(points)):
        arc = points[start:] + [point + MINUTES_PER_DAY for point in points[:start]]
        if arc[-1] - arc[0] == spread:
            middle = arc[len(arc) // 2] % MINUTES_PER_DAY
            return middle - MINUTES_PER_DAY if middle > 14 * 60 else middle
    return points[0]


def group_for_late_joiner(offset: int, groups: dict[int, list[int]], maximum: int) -> int | None:
    """The group a learner joining after formation fits: one with room in their time band.

    `groups` maps a group's key to its members' offsets. Among groups below `maximum` whose
    spread stays within a good spread (or does not grow) with the newcomer, the one whose
    spread grows least, then the smallest. None when no group fits: start a new one.
    """
    best = None
    for key, offsets in groups.items():
        if len(offsets) >= maximum:
            continue
        before = circular_spread(offsets)
        after = circular_spread([*offsets, offset])
        if after > max(GOOD_SPREAD_MINUTES, before):
            continue
        rank = (after - before, len(offsets), key)
        if best is None or rank < best[0]:
            best = (rank, key)
    return best[1] if best else None


def groups_reform(
    groups: dict[int, list[Candidate]], minimum: int, maximum: int, quiet: frozenset[int] | set[int] = frozenset()
) -> tuple[dict[int, int], set[int]]:
    """Merge groups that fell below `minimum` active members into neighbours of the same time band.

    `quiet`: keys of members who do not count as active (they still hold their seat: a group's
    room is counted with them). Everyone in a group of at least `minimum` active members stays
    put. Members of the small groups (quiet ones too, after the active ones) move, one by one,
    to the best group with room in their band (as late joiners do); what is left of small groups
    in one band is then merged together. Returns (moves: member key -> group key, dissolved group keys).
    """
    members = {key: list(group) for key, group in groups.items()}
    active = {key: sum(member.key not in quiet for member in group) for key, group in members.items()}
    small = sorted((key for key, group in members.items() if group and active[key] < minimum), key=lambda key: (active[key], len(members[key])))
    staying = [key for key, group in members.items() if group and active[key] >= minimum]
    moves: dict[int, int] = {}
    dissolved: set[int] = set()
    for key in small:
        receivers = {other: [m.utc_offset for m in members[other]] for other in staying}
        # Active members first: where room runs out, the quiet ones are those left behind.
        for candidate in sorted(members[key], key=lambda member: member.key in quiet):
            target = group_for_late_joiner(candidate.utc_offset, receivers, maximum)
            if target is None:
                continue
            members[key].remove(candidate)
            members[target].append(candidate)
            receivers[target].append(candidate.utc_offset)
            moves[candidate.key] = target
        if not members[key]:
            dissolved.add(key)
    # Leftovers of small groups: merge each into the other small group of its band that
    # it fits best, while the two together stay within `maximum`.
    leftovers = [key for key in small if members[key]]
    for key in leftovers:
        if not members[key]:
            continue
        offsets = [member.utc_offset for member in members[key]]
        best = None
        for other in leftovers:
            if other == key or not members[other] or len(members[other]) + len(offsets) > maximum:
                continue
            other_offsets = [member.utc_offset for member in members[other]]
            after = circular_spread(offsets + other_offsets)
            if after > max(GOOD_SPREAD_MINUTES, circular_spread(other_offsets), circular_spread(offsets)):
                continue
            if best is None or (after, other) < best:
                best = (after, other)
        if best is None:
            continue
        target = best[1]
        for member in members[key]:
            moves[member.key] = target
        members[target].extend(members[key])
        members[key] = []
        dissolved.add(key)
    return moves, dissolved


@dataclass
class GroupQuality:
    key: object
    size: int
    spread_hours: float
    experience: dict[str, int]


@dataclass
class FormationQuality:
    groups: list[GroupQuality]
    learners: int
    ungrouped: int

    @property
    def smallest(self) -> int:
        return min((group.size for group in self.groups), default=0)

    @property
    def largest(self) -> int:
        return max((group.size for group in self.groups), default=0)

    @property
    def share_within_good_spread(self) -> float:
        if not self.groups:
            return 1.0
        good = sum(group.spread_hours * 60 <= GOOD_SPREAD_MINUTES for group in self.groups)
        return good / len(self.groups)


def formation_quality(groups: dict[object, list[Candidate]], learners: int) -> FormationQuality:
    """Per group: size, offset spread in hours, experience counts; overall: who is left out."""
    rows = [
        GroupQuality(
            key=key,
            size=len(members),
            spread_hours=circular_spread([member.utc_offset for member in members]) / 60,
            experience=dict(Counter(member.experience for member in members)),
        )
        for key, members in groups.items()
        if members
    ]
    grouped = sum(row.size for row in rows)
    return FormationQuality(groups=rows, learners=learners, ungrouped=learners - grouped)
