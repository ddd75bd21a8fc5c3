"""The outcome report: which way of forming groups keeps learners going (issue 16).

For each group strategy (StudyGroup.strategy, the strategy a learner's group was formed by), the
share of the round's learners still active at week 2, week 4 and the round's last week, with
its 95% Wilson interval and the learners behind it, and whether the strategies differ by more
than chance explains (scheduler/proportions.py). Per round, and pooled across a course's rounds.

Definitions (the page's footnote says them too):
- **The learners** of a round: its enrollments that were confirmed (active, paused, and those
  that since left or dropped back: leaving is the outcome measured). Erased learners are gone.
- **A learner's strategy**: that of their current group (kept as history when they leave).
  Learners without a group (they asked for none, or arrived after formation and were not placed)
  are a row of their own, "No group", and are left out of the comparison: nobody assigned them a
  strategy.
- **Active at week N**: checked in for week N (any answer: done, behind, stuck), or opened week
  N's email where the provider reports opens (Delivery of kind week, week N, opened_at set).
- A week is reported once it has begun; a week under way counts what has come in so far.
  Rounds shorter than 5 weeks have no "week 4" column of their own (their last week is it).

One query for a round, two for a course (its rounds, then the counts), whatever their size:
the learners and the active learners per (round, strategy), counted in the database.
"""

import datetime
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import combinations

from django.db import connection

from cohorts.models import GROUP_FORMING_STRATEGIES, Cohort, Course, week_begins
from scheduler.models import Delivery, EmailKind
from scheduler.proportions import SIGNIFICANCE_LEVEL, SMALLEST_COUNT_FOR_TEST, two_proportions_compare, wilson_interval
from signups.models import CheckIn, Enrollment

# Confirmed enrollments, whether or not they are still in the round.
COUNTED_STATUSES = (Enrollment.Status.ACTIVE, Enrollment.Status.PAUSED, Enrollment.Status.LEFT, Enrollment.Status.SWITCHED)
NO_GROUP = ""  # the strategy key of learners without a group
NO_GROUP_LABEL = "No group"
STRATEGY_LABELS = dict(GROUP_FORMING_STRATEGIES)

# The report's columns: (key, label); a round's week for each is milestone_week().
MILESTONES = [("week_2", "Week 2"), ("week_4", "Week 4"), ("last", "Last week")]


def milestone_week(key: str, week_count: int) -> int | None:
    """The round's week for a column: 2, 4, its last; None when the round has no such column of
    its own (a round of 4 weeks reports week 4 as its last week, not twice)."""
    if key == "last":
        return week_count
    week = int(key.removeprefix("week_"))
    return week if week < week_count else None


def _percent(share: float | None) -> str:
    return "" if share is None else f"{share * 100:.1f}%"


@dataclass(frozen=True)
class Figure:
    """The share of `learners` who were active at a week, with its 95% Wilson interval."""

    active: int
    learners: int

    @property
    def share(self) -> float | None:
        return self.active / self.learners if self.learners else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.active, self.learners)

    @property
    def percent(self) -> str:
        return _percent(self.share)

    @property
    def interval_text(self) -> str:
        return "" if self.interval is None else f"{self.interval[0] * 100:.1f}–{self.interval[1] * 100:.1f}%"


@dataclass
class StrategyOutcome:
    strategy: str  # GroupStrategy value, or NO_GROUP
    label: str
    learners: int
    figures: dict[str, Figure | None]  # per milestone key; None: no round has reached it


@dataclass(frozen=True)
class Verdict:
    """What a column says about the strategies: a plain sentence, and the test behind it."""

    milestone: str
    sentence: str
    distinguishable: bool | None  # None: too small to tell, or nothing to compare
    p_value: float | None = None


@dataclass
class OutcomeReport:
    rows: list[StrategyOutcome]
    verdicts: list[Verdict]
    milestones: list[tuple[str, str]] = field(default_factory=lambda: list(MILESTONES))


@dataclass
class CohortOutcomes:
    cohort: Cohort
    report: OutcomeReport
    weeks: dict[str, int | None]  # the round's week for each column


@dataclass
class CourseOutcomes:
    course: Course
    pooled: OutcomeReport  # every round's learners together, each week over the rounds that reached it
    rounds: list[CohortOutcomes]


# --- Counting ---------------------------------------------------------------------------------


def _placeholders(values) -> str:
    return ", ".join(["%s"] * len(values))


def _counts(cohort_ids: list[int], weeks: list[int]) -> tuple[dict[tuple[int, str], int], dict[tuple[int, str, int], int]]:
    """The learners per (round, strategy), and those active per (round, strategy, week) for
    the given weeks. One query.

    SQL of its own, in one pass over the rounds' enrollments: the check-ins and the opens of
    those weeks (from the small partial index delivery_opened_week) are first folded into one
    row per learner with a flag per week (so who did both counts once), then joined to the
    enrollments and their groups by hash, and summed per round and strategy. Joining the
    activity rows to the enrollments instead misleads PostgreSQL's estimates into a loop over
    the groups' index and a sort on disk: twice as slow at 100,000 learners."""
    if not cohort_ids:
        return {}, {}
    enrollment, group = Enrollment._meta.db_table, Enrollment._meta.get_field("group").related_model._meta.db_table
    flags = ", ".join(f"MAX(CASE WHEN week_number = %s THEN 1 ELSE 0 END) AS w{index}" for index in range(len(weeks)))
    sums = "".join(f", SUM(COALESCE(a.w{index}, 0))" for index in range(len(weeks)))
    activity = f"""
        LEFT JOIN (
            SELECT cohort_id, learner_id, {flags} FROM (
                SELECT cohort_id, learner_id, week_number FROM {CheckIn._meta.db_table}
                WHERE cohort_id IN ({_placeholders(cohort_ids)}) AND week_number IN ({_placeholders(weeks)})
                UNION ALL
                SELECT cohort_id, learner_id, week_number FROM {Delivery._meta.db_table}
                WHERE cohort_id IN ({_placeholders(cohort_ids)}) AND kind = %s AND week_number IN ({_placeholders(weeks)})
                  AND opened_at IS NOT NULL
            ) done GROUP BY cohort_id, learner_id
        ) a ON a.cohort_id = e.cohort_id AND a.learner_id = e.learner_id
    """ if weeks else ""
    sql = f"""
        SELECT e.cohort_id, g.strategy, COUNT(*){sums}
        FROM {enrollment} e
        LEFT JOIN {group} g ON g.id = e.group_id
        {activity}
        WHERE e.cohort_id IN ({_placeholders(cohort_ids)}) AND e.status IN ({_placeholders(COUNTED_STATUSES)})
        GROUP BY e.cohort_id, g.strategy
    """
    # In the order of the placeholders: each week's flag, the check-ins', the opens', the enrollments'.
    params = [*weeks, *cohort_ids, *weeks, *cohort_ids, EmailKind.WEEK, *weeks] if weeks else []
    params += [*cohort_ids, *COUNTED_STATUSES]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    learners: dict[tuple[int, str], int] = defaultdict(int)
    active: dict[tuple[int, str, int], int] = defaultdict(int)
    for cohort_id, strategy, count, *per_week in rows:
        strategy = strategy or NO_GROUP
        learners[(cohort_id, strategy)] += count
        for week, week_active in zip(weeks, per_week):
            active[(cohort_id, strategy, week)] += int(week_active or 0)
    return learners, active


def _strategy_order(strategies) -> list[str]:
    known = [value for value, _ in GROUP_FORMING_STRATEGIES]
    ordered = [value for value in known if value in strategies]
    ordered += sorted(set(strategies) - set(known) - {NO_GROUP})  # a strategy since renamed
    return ordered + ([NO_GROUP] if NO_GROUP in strategies else [])


def _reached_weeks(cohort: Cohort, today: datetime.date) -> dict[str, int | None]:
    """The round's week for each column, None where it has none or the week has not begun."""
    weeks = {}
    for key, _ in MILESTONES:
        week = milestone_week(key, cohort.week_count)
        weeks[key] = week if week is not None and week_begins(cohort.start_date, week) <= today else None
    return weeks


def _report(cohorts: list[Cohort], weeks: dict[int, dict[str, int | None]], learners, active) -> OutcomeReport:
    """The rows of these rounds together: per strategy, each column summed over the rounds
    that reached it."""
    strategies = {strategy for (cohort_id, strategy) in learners if cohort_id in weeks}
    rows = []
    for strategy in _strategy_order(strategies):
        figures: dict[str, Figure | None] = {}
        for key, _ in MILESTONES:
            reached = [(cohort.pk, weeks[cohort.pk][key]) for cohort in cohorts if weeks[cohort.pk][key] is not None]
            figures[key] = Figure(
                active=sum(active.get((cohort_id, strategy, week), 0) for cohort_id, week in reached),
                learners=sum(learners.get((cohort_id, strategy), 0) for cohort_id, _ in reached),
            ) if reached else None
        total = sum(learners.get((cohort.pk, strategy), 0) for cohort in cohorts)
        rows.append(StrategyOutcome(strategy, STRATEGY_LABELS.get(strategy, NO_GROUP_LABEL if strategy == NO_GROUP else strategy), total, figures))
    return OutcomeReport(rows, [_verdict(key, label, rows) for key, label in MILESTONES])


# --- What it means ------------------------------------------------------------------------------


def _verdict(key: str, label: str, rows: list[StrategyOutcome]) -> Verdict:
    """One sentence on a column: the strategies with the highest and lowest share compared by a
    two-proportion z-test at the 5% level; with more than two strategies, at 5% divided by the
    number of pairs (Bonferroni), since picking the extremes is itself a comparison of every pair."""
    compared = [row for row in rows if row.strategy != NO_GROUP and row.figures[key] and row.figures[key].learners]
    if not any(row.figures[key] for row in rows):
        return Verdict(key, f"{label}: not reached yet.", None)
    if len(compared) < 2:
        return Verdict(key, f"{label}: only one strategy formed groups here, so there is nothing to compare.", None)
    compared.sort(key=lambda row: (-row.figures[key].share, row.label))
    best, worst = compared[0], compared[-1]
    high, low = best.figures[key], worst.figures[key]
    comparison = two_proportions_compare(high.active, high.learners, low.active, low.learners)
    pairs = len(list(combinations(compared, 2)))
    level = SIGNIFICANCE_LEVEL / pairs
    shares = (f"{best.label} {high.percent} ({high.active} of {high.learners}) and "
              f"{worst.label} {low.percent} ({low.active} of {low.learners})")
    if comparison.too_small:
        return Verdict(key, (
            f"{label}: {shares}. The sample is too small to tell: each strategy needs at least "
            f"{SMALLEST_COUNT_FOR_TEST} learners active and {SMALLEST_COUNT_FOR_TEST} not active."
        ), None)
    points = f"{abs(comparison.difference) * 100:.1f} points"
    distinguishable = comparison.p_value < level
    if distinguishable:
        conclusion = f"the difference, {points}, is larger than chance explains at this size (p = {comparison.p_value:.3f})."
    else:
        conclusion = f"the difference, {points}, is not distinguishable from chance at this size (p = {comparison.p_value:.3f})."
    return Verdict(key, f"{label}: {shares}; {conclusion}", distinguishable, comparison.p_value)


# --- The reports ------------------------------------------------------------------------------


def cohort_outcomes(cohort: Cohort, today: datetime.date) -> CohortOutcomes:
    """The round's outcome report on `today`. One query, whatever the round's size."""
    weeks = {cohort.pk: _reached_weeks(cohort, today)}
    reached = sorted({week for week in weeks[cohort.pk].values() if week})
    report = _report([cohort], weeks, *_counts([cohort.pk], reached))
    return CohortOutcomes(cohort, report, weeks[cohort.pk])


def course_outcomes(course: Course, today: datetime.date) -> CourseOutcomes:
    """Every round of the course, earliest first, and all of them pooled. Two queries,
    whatever the number of rounds or learners."""
    cohorts = list(Cohort.objects.filter(course=course).order_by("start_date", "name"))
    weeks = {cohort.pk: _reached_weeks(cohort, today) for cohort in cohorts}
    ids = [cohort.pk for cohort in cohorts]
    reached = sorted({week for by_key in weeks.values() for week in by_key.values() if week})
    learners, active = _counts(ids, reached)
    rounds = [CohortOutcomes(cohort, _report([cohort], {cohort.pk: weeks[cohort.pk]}, learners, active), weeks[cohort.pk]) for cohort in cohorts]
    return CourseOutcomes(course, _report(cohorts, weeks, learners, active), rounds)


# --- Export -----------------------------------------------------------------------------------

CSV_HEADER = ["round", "strategy", "learners", "week", "active", "percent active", "95% interval low", "95% interval high"]


def _csv_figures(round_name: str, cohort_weeks: dict[str, int | None] | None, report: OutcomeReport) -> Iterator[list]:
    for row in report.rows:
        for key, label in report.milestones:
            figure = row.figures[key]
            if figure is None:
                continue
            week = f"{label} (week {cohort_weeks[key]})" if cohort_weeks and key == "last" else label
            low, high = figure.interval or (None, None)
            yield [round_name, row.label, figure.learners, week, figure.active,
                   *("" if value is None else f"{value * 100:.1f}" for value in (figure.share, low, high))]


def cohort_outcomes_csv_rows(outcomes: CohortOutcomes) -> Iterator[list]:
    yield CSV_HEADER
    yield from _csv_figures(outcomes.cohort.name, outcomes.weeks, outcomes.report)


def course_outcomes_csv_rows(outcomes: CourseOutcomes) -> Iterator[list]:
    """Each round's rows, then the pooled ones (round: "All rounds")."""
    yield CSV_HEADER
    for round_ in outcomes.rounds:
        yield from _csv_figures(round_.cohort.name, round_.weeks, round_.report)
    yield from _csv_figures("All rounds", None, outcomes.pooled)
