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

That is the strategy "time zone and experience" (`groups_form`). A cohort may choose another
(cohorts.models.GroupStrategy), with the same size rules (the same cut into sizes):
- "time zone only" (`groups_form_by_time_zone`): the same line around the clock, members of
  one offset in a seeded random order instead of interleaved by experience;
- "random", the 2013 Mechanical MOOC's baseline (`groups_form_at_random`): one seeded random
  line, cut as if everyone shared one time zone;
- an experiment splits the learners between two of these (`experiment_split`), each arm then
  forming its own groups.
"""

import datetime
import functools
import hashlib
import random
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping
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


def _shuffled_within_position(line: list[tuple[int, Candidate]], seed: int) -> list[tuple[int, Candidate]]:
    """Sort by position; within a position, a seeded random order that ignores experience."""
    rng = random.Random(seed)
    by_position: dict[int, list[Candidate]] = defaultdict(list)
    for position, candidate in line:
        by_position[position].append(candidate)
    ordered = []
    for position in sorted(by_position):
        # Sorted first, so that the input's order does not matter.
        members = sorted(by_position[position], key=lambda candidate: candidate.key)
        rng.shuffle(members)
        ordered.extend((position, candidate) for candidate in members)
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
    """Sort candidates into groups (lists of candidates), by the goals in this module's docstring:
    the strategy "time zone and experience".

    A pool smaller than `minimum` becomes one group: nobody is left out.
    """
    if not candidates:
        return []
    return _cut(_interleaved(_around_the_clock(candidates), seed), target, minimum, maximum)


def groups_form_by_time_zone(candidates: list[Candidate], target: int, minimum: int, maximum: int, seed: int = 0) -> list[list[Candidate]]:
    """The strategy "time zone only": groups as close in time zone as `groups_form` makes them,
    but nobody is placed for their experience (within an offset the order is random)."""
    if not candidates:
        return []
    return _cut(_shuffled_within_position(_around_the_clock(candidates), seed), target, minimum, maximum)


def groups_form_at_random(candidates: list[Candidate], target: int, minimum: int, maximum: int, seed: int = 0) -> list[list[Candidate]]:
    """The strategy "random", the 2013 baseline: members drawn at random, whatever their time
    zone or experience; sizes by the same rules as the other strategies."""
    if not candidates:
        return []
    members = sorted(candidates, key=lambda candidate: candidate.key)  # the input's order must not matter
    random.Random(seed).shuffle(members)
    # Everyone at one position: the cut weighs sizes only.
    return _cut([(0, candidate) for candidate in members], target, minimum, maximum)


# The strategies that form groups, by their names in cohorts.models.GroupStrategy.
FORMING_BY_STRATEGY = {
    "timezone_experience": groups_form,
    "timezone": groups_form_by_time_zone,
    "random": groups_form_at_random,
}


def groups_form_by(strategy: str, candidates: list[Candidate], target: int, minimum: int, maximum: int, seed: int = 0) -> list[list[Candidate]]:
    """Groups formed by the named strategy (a key of FORMING_BY_STRATEGY; KeyError otherwise)."""
    return FORMING_BY_STRATEGY[strategy](candidates, target, minimum, maximum, seed=seed)


def _cut(ordered: list[tuple[int, Candidate]], target: int, minimum: int, maximum: int) -> list[list[Candidate]]:
    """Cut a line of (position, candidate) into contiguous groups of allowed sizes."""
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


def group_for_late_joiner_at_random(key: int, sizes: dict[int, int], maximum: int, seed: int = 0) -> int | None:
    """The group a learner joining a "random" strategy's groups goes to: any group below `maximum`,
    drawn at random, seeded by the learner's key (the same learner, the same draw). `sizes` maps
    a group's key to its number of members. None when every group is full: start a new one."""
    with_room = sorted(group for group, size in sizes.items() if size < maximum)
    if not with_room:
        return None
    return random.Random(_seeded_digest(seed, key)).choice(with_room)


# --- Experiments: the learners split between two strategies ---------------------------------------

# An experiment's arms are balanced within each band of this many hours of the clock (and each
# experience level), so that neither strategy gets, say, more of the evening-in-Europe learners.
EXPERIMENT_BAND_MINUTES = 180


def _seeded_digest(seed: int, key: object) -> int:
    # Not hash(): Python salts the hash of strings per process; this must be the same everywhere.
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")


def experiment_stratum(candidate: Candidate) -> tuple[int, str]:
    """The part of the pool a learner is balanced within: their band of the clock and experience."""
    return (candidate.utc_offset % MINUTES_PER_DAY) // EXPERIMENT_BAND_MINUTES, candidate.experience


def experiment_split(keys: Iterable[int], seed: int, strata: Mapping[int, Hashable] | None = None) -> tuple[list[int], list[int]]:
    """Split learners' keys at random between an experiment's two arms (a, b): reproducible from
    `seed` (whatever the keys' order), and balanced.

    Balanced: the arms differ by at most one learner, and so does each stratum's share of them
    (`strata` maps a key to its stratum, e.g. experiment_stratum; none: one stratum). How: within
    each stratum, in a seeded random order, members go to a and b by turns (the pairs); what is
    left over (one per odd stratum) goes, again in a seeded random order, by turns to a and b,
    the first to a seeded random arm. So every learner is in a with probability 1/2.
    Returns each arm's keys, sorted.
    """
    rng = random.Random(seed)
    by_stratum: dict[Hashable, list[int]] = defaultdict(list)
    for key in sorted(set(keys)):
        by_stratum[strata[key] if strata is not None else None].append(key)
    arms: tuple[list[int], list[int]] = ([], [])
    leftovers = []
    for stratum in sorted(by_stratum, key=repr):  # a fixed order, whatever the labels' types
        members = by_stratum[stratum]
        rng.shuffle(members)
        if len(members) % 2:
            leftovers.append(members.pop())
        arms[0].extend(members[0::2])
        arms[1].extend(members[1::2])
    rng.shuffle(leftovers)
    first = rng.randrange(2)
    for index, key in enumerate(leftovers):
        arms[(first + index) % 2].append(key)
    return sorted(arms[0]), sorted(arms[1])


def experiment_arm_of(key: int, seed: int) -> int:
    """The arm (0 for a, 1 for b) of a learner who joins an experiment after its split: a seeded
    draw from their key, the same every time it is asked."""
    return _seeded_digest(seed, key) % 2


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


def groups_reform_by_strategy(
    groups: dict[int, list[Candidate]], strategies: Mapping[int, str], minimum: int, maximum: int,
    quiet: frozenset[int] | set[int] = frozenset(),
) -> tuple[dict[int, int], set[int]]:
    """`groups_reform` within each strategy: `strategies` maps a group's key to how it was formed.

    Groups of different strategies never exchange members (an experiment's arms stay apart), and
    "random" groups merge regardless of time zone, as they were formed.
    """
    moves: dict[int, int] = {}
    dissolved: set[int] = set()
    for strategy in sorted(set(strategies[key] for key in groups)):
        alike = {key: group for key, group in groups.items() if strategies[key] == strategy}
        if strategy == "random":
            alike = {key: [Candidate(m.key, 0, m.experience) for m in group] for key, group in alike.items()}
        strategy_moves, strategy_dissolved = groups_reform(alike, minimum, maximum, quiet)
        moves.update(strategy_moves)
        dissolved |= strategy_dissolved
    return moves, dissolved


@dataclass
class GroupQuality:
    key: object
    size: int
    spread_hours: float
    experience: dict[str, int]
    strategy: str = ""  # how the group was formed (GroupStrategy's value), when known


@dataclass
class FormationQuality:
    groups: list[GroupQuality]
    learners: int
    ungrouped: int
    seed: int | None = None  # the formation's seed, when the report is of a formation

    @property
    def share_mixing_experience(self) -> float:
        """The share of groups with members of at least two experience levels."""
        if not self.groups:
            return 1.0
        return sum(len(group.experience) >= 2 for group in self.groups) / len(self.groups)

    def per_strategy(self) -> dict[str, "FormationQuality"]:
        """The same report for each strategy's groups (its learners: their members), in name order."""
        reports = {}
        for strategy in sorted({group.strategy for group in self.groups}):
            rows = [group for group in self.groups if group.strategy == strategy]
            reports[strategy] = FormationQuality(groups=rows, learners=sum(row.size for row in rows), ungrouped=0, seed=self.seed)
        return reports

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


def formation_quality(
    groups: dict[object, list[Candidate]], learners: int, strategies: Mapping[object, str] | None = None, seed: int | None = None
) -> FormationQuality:
    """Per group: size, offset spread in hours, experience counts (and strategy, from `strategies`
    by group key); overall: who is left out."""
    rows = [
        GroupQuality(
            key=key,
            size=len(members),
            spread_hours=circular_spread([member.utc_offset for member in members]) / 60,
            experience=dict(Counter(member.experience for member in members)),
            strategy=strategies[key] if strategies else "",
        )
        for key, members in groups.items()
        if members
    ]
    grouped = sum(row.size for row in rows)
    return FormationQuality(groups=rows, learners=learners, ungrouped=learners - grouped, seed=seed)
