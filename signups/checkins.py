"""Weekly check-ins: a learner says how a week of their round went, from the three links of its
email ("I did this week", "I'm behind", "I'm stuck"), and may ask us to tell their group.

The rules:
- **No login**: a check-in link is signed for one learner, round and week (signups/tokens.py)
  and never expires by itself; erasing the learner makes it worthless.
- **Only a POST records** an answer. Mail scanners fetch every link in a message (GET, HEAD)
  before its reader sees it: the page they get asks, and records nothing.
- **The answer window** of week N, for a learner, opens when week N's email is due for them (the
  round's send weekday and time, in their own time zone: the moment scheduler/due.py reckons) and
  closes when week N+1's email is due for them. The last week's closes at the moment a week
  after it would be due: a week after its email, like every other week. Within the window the
  answer may be changed as often as the learner likes; before it ("not sent yet") or after it
  ("closed") nothing is recorded and the page says why. The calendar decides, not the delivery
  ledger: signups never imports the scheduler, and a learner can only hold the link of a week
  whose email reached them.
- **Only a member of the round** (an active or paused enrollment in it) checks in: one who has
  dropped back, or left, is told so and nothing is recorded.
- **Telling the group** (a stuck learner's explicit second POST) happens at most once per learner
  and week (`CheckIn.group_told_at`, set by a guarded UPDATE), through group mail when it is on:
  groupmail registers how in GROUP_TELLERS at start-up (groupmail/apps.py), since signups never
  imports it; the message is then screened and relayed like any member's.
"""

import datetime
import enum
import functools
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, replace

from django.conf import settings
from django.db import connection
from django.db.models import OuterRef, Subquery
from django.db.models.expressions import Col

from cohorts.models import Cohort, Course, StudyGroup, Week, week_send_date
from cohorts.selectors import cohorts_open_for_signup
from signups.models import CheckIn, Enrollment, Learner
from signups.tokens import TokenInvalid, checkin_token, checkin_token_read

Answer = CheckIn.Answer
NOTE_MAX_LENGTH = 1000  # characters of the learner's own words in a message to their group


# --- The answer window ------------------------------------------------------------------------


def zone_of(timezone_name: str) -> datetime.tzinfo:
    try:
        return zoneinfo.ZoneInfo(timezone_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return datetime.UTC  # a name we no longer know (an old import): as signups.selectors.learner_today does


def week_email_due(cohort: Cohort, week_number: int, timezone_name: str) -> datetime.datetime:
    """The moment week `week_number`'s email is due for a learner in `timezone_name`, the same
    one scheduler/due.py's local_send_moment reckons (pinned by a test): the round's send
    weekday and time on the learner's calendar, a skipped or repeated hour read with fold=0.
    Any week number works: one past the last is when a next week's email would be due."""
    local_date = week_send_date(cohort.start_date, week_number, cohort.send_weekday)
    local = datetime.datetime.combine(local_date, cohort.send_time.replace(fold=0), tzinfo=zone_of(timezone_name))
    return local.astimezone(datetime.UTC)


def checkin_window(cohort: Cohort, week_number: int, timezone_name: str) -> tuple[datetime.datetime, datetime.datetime]:
    """When a learner in `timezone_name` may answer for week `week_number`: [opens, closes)."""
    return week_email_due(cohort, week_number, timezone_name), week_email_due(cohort, week_number + 1, timezone_name)


# --- Links for the weekly email ---------------------------------------------------------------


def checkin_links(learner_public_id, cohort_id: int, week_number: int) -> dict[str, str]:
    """The three check-in links of a learner's email about one week (one signature for all three)."""
    base = f"{settings.SITE_URL}/checkin/{checkin_token(learner_public_id, cohort_id, week_number)}/"
    return {f"checkin_{answer}": f"{base}{answer}/" for answer in Answer.values}


# --- Reading a link ---------------------------------------------------------------------------


class CheckInProblem(enum.StrEnum):
    """Why nothing can be recorded for a link's week; the check-in page words each."""

    NOT_YET = "not_yet"  # the week's email is not due for the learner yet
    CLOSED = "closed"  # the next week's email has come (or the round is over): the window closed
    NOT_IN_ROUND = "not_in_round"  # they dropped back, moved or left since


@dataclass(frozen=True)
class CheckInWeek:
    """A learner's check-in for one week of their round, as its page shows it."""

    learner: Learner
    cohort: Cohort
    enrollment: Enrollment | None  # their active or paused enrollment in the round; None: not in it any more
    week_number: int
    week: Week | None  # the course's week (title, discussion link); None when the course lacks it
    opens_at: datetime.datetime
    closes_at: datetime.datetime
    current: CheckIn | None  # their answer so far, if any
    problem: CheckInProblem | None

    @property
    def group(self):
        """The learner's study group in this round (not merged away), or None."""
        group = self.enrollment.group if self.enrollment is not None else None
        if group is None or group.dissolved_at is not None or group.cohort_id != self.cohort.pk:
            return None
        return group


class _Columns:
    """Some fields of a model, read by a hand-written query and turned into a model instance the
    way the ORM does (the database's values converted as its own queries convert them; the other
    fields deferred, loaded if something asks for them)."""

    def __init__(self, model, names: list[str]):
        wanted = set(names)
        self.model = model
        self.fields = [field for field in model._meta.concrete_fields if field.name in wanted]  # from_db wants this order

    def sql(self, alias: str) -> str:
        return ", ".join(f"{alias}.{connection.ops.quote_name(field.column)}" for field in self.fields)

    def build(self, values):
        converted = []
        for field, value in zip(self.fields, values):
            column = Col(self.model._meta.db_table, field)
            for convert in connection.ops.get_db_converters(column) + field.get_db_converters(connection):
                value = convert(value, column, connection)
            converted.append(value)
        return self.model.from_db(connection.alias, [field.attname for field in self.fields], converted)


# What a check-in page and its answer use of each row (CheckInWeek and templates/signups/checkin.html).
_ENROLLMENT = _Columns(Enrollment, ["id", "learner", "course", "cohort", "status", "group"])
_LEARNER = _Columns(Learner, ["id", "email", "public_id", "first_name", "timezone"])
_COHORT = _Columns(Cohort, ["id", "course", "name", "slug", "start_date", "week_count", "send_weekday", "send_time"])
_COURSE = _Columns(Course, ["id", "title", "slug", "week_count"])
_GROUP = _Columns(StudyGroup, ["id", "cohort", "number", "name", "slug", "discussion_url", "dissolved_at"])
_WEEK = _Columns(Week, ["id", "course", "number", "title", "discussion_title", "discussion_url"])
_ANSWER = _Columns(CheckIn, ["id", "learner", "cohort", "week_number", "answer", "answered_at", "changed_at", "group_told_at"])


@functools.cache
def _enrollment_with_week_sql() -> str:
    table = lambda model: connection.ops.quote_name(model._meta.db_table)  # noqa: E731
    columns = ", ".join(part.sql(alias) for part, alias in [
        (_ENROLLMENT, "e"), (_LEARNER, "l"), (_COHORT, "c"), (_COURSE, "co"), (_GROUP, "g"), (_WEEK, "w"), (_ANSWER, "a"),
    ])
    grouped = ", ".join("%s" for _ in Enrollment.GROUPED)
    return (
        f"SELECT {columns} FROM {table(Enrollment)} e"
        f" JOIN {table(Learner)} l ON l.id = e.learner_id"
        f" JOIN {table(Cohort)} c ON c.id = e.cohort_id"
        f" JOIN {table(Course)} co ON co.id = c.course_id"
        f" LEFT JOIN {table(StudyGroup)} g ON g.id = e.group_id"
        f" LEFT JOIN {table(Week)} w ON w.course_id = c.course_id AND w.number = %s"
        f" LEFT JOIN {table(CheckIn)} a ON a.learner_id = e.learner_id AND a.cohort_id = e.cohort_id AND a.week_number = %s"
        f" WHERE l.public_id = %s AND e.cohort_id = %s AND e.status IN ({grouped}) LIMIT 1"
    )


@dataclass
class _EnrollmentWithWeek:
    enrollment: Enrollment  # with its learner, cohort (and course) and group
    week: Week | None
    answer: CheckIn | None


def _enrollment_with_week(link) -> _EnrollmentWithWeek | None:
    """The learner's active or paused enrollment in the link's round, with learner, round, course
    and group, the course's week and the learner's answer so far for it: one query, every check-in
    page needs all of it. Written by hand, not built by the ORM at each request: building this
    query cost more CPU than running it, on the busiest path of a Monday (bench/bench_checkins.py)."""
    public_id = Learner._meta.get_field("public_id").get_db_prep_value(link.learner_public_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(_enrollment_with_week_sql(), [link.week_number, link.week_number, public_id, link.cohort_id, *Enrollment.GROUPED])
        row = cursor.fetchone()
    if row is None:
        return None
    parts, start = [], 0
    for columns in (_ENROLLMENT, _LEARNER, _COHORT, _COURSE, _GROUP, _WEEK, _ANSWER):
        values = row[start : start + len(columns.fields)]
        start += len(columns.fields)
        parts.append(columns.build(values) if values[0] is not None else None)  # a LEFT JOIN that found nothing
    enrollment, learner, cohort, course, group, week, answer = parts
    cohort.course = course
    enrollment.learner, enrollment.cohort, enrollment.group = learner, cohort, group
    if answer is not None:
        answer.learner, answer.cohort = learner, cohort
    return _EnrollmentWithWeek(enrollment, week, answer)


def checkin_week_from_token(token: str, now: datetime.datetime) -> CheckInWeek:
    """The learner, round and week a check-in link names, with the course's week, their answer
    so far and whether one may be recorded `now`. Raises TokenInvalid: forged, altered, for a
    week the round does not have, or its learner erased. One query (three when the learner has
    left the round)."""
    link = checkin_token_read(token)
    found = _enrollment_with_week(link)
    if found is None:
        learner = Learner.objects.filter(public_id=link.learner_public_id).first()
        cohort = Cohort.objects.select_related("course").filter(pk=link.cohort_id).first()
        if learner is None or cohort is None or not 1 <= link.week_number <= cohort.week_count:
            raise TokenInvalid
        opens_at, closes_at = checkin_window(cohort, link.week_number, learner.timezone)
        week = Week.objects.filter(course_id=cohort.course_id, number=link.week_number).first()
        return CheckInWeek(learner, cohort, None, link.week_number, week, opens_at, closes_at, None, CheckInProblem.NOT_IN_ROUND)
    enrollment = found.enrollment
    learner, cohort = enrollment.learner, enrollment.cohort
    if not 1 <= link.week_number <= cohort.week_count:
        raise TokenInvalid
    opens_at, closes_at = checkin_window(cohort, link.week_number, learner.timezone)
    if now < opens_at:
        problem = CheckInProblem.NOT_YET
    else:
        problem = CheckInProblem.CLOSED if now >= closes_at else None
    week, current = found.week, found.answer
    return CheckInWeek(learner, cohort, enrollment, link.week_number, week, opens_at, closes_at, current, problem)


def next_round_to_drop_back_to(checkin: CheckInWeek, today: datetime.date) -> Cohort | None:
    """The first later round of the course open for signup on `today`: what "I'm behind" offers.
    Its seats are not counted here, as the learner's page does (a COUNT over a big round's
    enrollments at each click of a Monday burst): the switch takes a seat under the round's
    lock, and says so when none is left."""
    return cohorts_open_for_signup(today, course=checkin.cohort.course).filter(start_date__gt=checkin.cohort.start_date).first()


# --- Recording an answer ----------------------------------------------------------------------


class CheckInRefused(Exception):
    """Nothing was recorded: `problem` says why (CheckInProblem, or "not_stuck", "no_group",
    "no_group_mail", "group_mail_closed" for telling the group); `checkin` is the week as read."""

    def __init__(self, problem: str, checkin: CheckInWeek):
        super().__init__(problem)
        self.problem, self.checkin = problem, checkin


def checkin_record(token: str, answer: str, now: datetime.datetime) -> CheckInWeek:
    """Record (or change) the learner's answer for the link's week; returns the week with it.

    One INSERT ... ON CONFLICT UPDATE: two clicks at once leave one row, with the later answer;
    `answered_at` keeps the first answer's moment, `changed_at` the last. Idempotent: the same
    answer again changes only `changed_at`. Raises TokenInvalid, CheckInRefused (outside the
    answer window, or not in the round: nothing written) and ValueError for an unknown answer.
    """
    answer = Answer(answer)
    checkin = checkin_week_from_token(token, now)
    if checkin.problem is not None:
        raise CheckInRefused(checkin.problem, checkin)
    _answer_upsert(checkin.learner.pk, checkin.cohort.pk, checkin.week_number, answer, now)
    previous = checkin.current  # the row as it is now, without reading it again
    row = CheckIn(learner=checkin.learner, cohort=checkin.cohort, week_number=checkin.week_number, answer=answer,
                  answered_at=now, changed_at=now)
    if previous is not None:
        row.pk, row.answered_at, row.group_told_at = previous.pk, previous.answered_at, previous.group_told_at
    return replace(checkin, current=row)


def _answer_upsert(learner_id: int, cohort_id: int, week_number: int, answer: str, now: datetime.datetime) -> None:
    """One statement, committed on its own: bulk_create(update_conflicts=True) says the same with
    a transaction around it (two more round trips) and twice the CPU, on the busiest path of a
    Monday (bench/bench_checkins.py). PostgreSQL and SQLite both speak ON CONFLICT."""
    quote, moment = connection.ops.quote_name, connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(CheckIn._meta.db_table)} (learner_id, cohort_id, week_number, answer, answered_at, changed_at) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (learner_id, cohort_id, week_number) "
            "DO UPDATE SET answer = excluded.answer, changed_at = excluded.changed_at",
            [learner_id, cohort_id, week_number, str(answer), moment, moment],
        )


# --- Telling the group ------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageOnBehalf:
    """A short message a learner asked us to send their group: from them, to the group's address."""

    group_id: int
    group_slug: str
    learner_email: str
    learner_first_name: str
    subject: str
    text: str
    message_id: str  # the same for the same learner and week: a message handed over twice is stored once


# Who carries a message to a group on a learner's behalf: stores it once per message_id (handing the
# same one over again does nothing), returns False when the group's mail will not take it (closed),
# and then the check-in is not marked told. Filled by groupmail when it starts (groupmail/apps.py): signups never imports it.
GROUP_TELLERS: list[Callable[[MessageOnBehalf, datetime.datetime], bool]] = []


def group_mail_on() -> bool:
    """Whether a stuck learner's group can be told by email: group mail on, and its app running."""
    return bool(settings.GROUP_MAIL_DOMAIN) and bool(GROUP_TELLERS)


@dataclass(frozen=True)
class GroupTold:
    checkin: CheckInWeek
    already: bool  # told before (the first time's message stands); nothing sent now


def _stuck_message(checkin: CheckInWeek, note: str, week: Week | None) -> MessageOnBehalf:
    learner, number = checkin.learner, checkin.week_number
    name = learner.first_name or "A member of your group"
    about = f"week {number} ({week.title})" if week else f"week {number}"
    lines = ["Hi all,", "", f"I'm stuck on {about} and could use a hand."]
    if note:
        lines += ["", note]
    lines += ["", f"Reply to this email to answer {learner.first_name or 'me'} (and the whole group).", "",
              f"{name}, through the course's weekly check-in"]
    host = settings.SITE_URL.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0] or "localhost"
    return MessageOnBehalf(
        group_id=checkin.group.pk, group_slug=checkin.group.slug, learner_email=learner.email,
        learner_first_name=learner.first_name, subject=f"Stuck on week {number}" + (f": {week.title}" if week else ""),
        text="\n".join(lines) + "\n", message_id=f"<checkin.{checkin.cohort.pk}.{number}.{learner.public_id}@{host}>",
    )


def checkin_group_tell(token: str, note: str, now: datetime.datetime) -> GroupTold:
    """Tell the learner's group that they are stuck on the link's week, in a short message from
    them (with `note`, their own words, if any), relayed by group mail like any member's.

    At most once per learner and week: a check-in whose `group_told_at` is set sends nothing
    more, and the message's Message-ID is the same for the same learner and week, so group
    mail stores it once however often it is handed over (two presses at once). A refusal marks
    nothing. Raises TokenInvalid, and CheckInRefused when
    the week's window is closed (or not open), the answer is not "stuck", the learner has no
    group, group mail is off or the group's mail is closed.
    """
    checkin = checkin_week_from_token(token, now)
    if checkin.problem is not None:
        raise CheckInRefused(checkin.problem, checkin)
    current = checkin.current
    if current is None or current.answer != Answer.STUCK:
        raise CheckInRefused("not_stuck", checkin)
    if checkin.group is None:
        raise CheckInRefused("no_group", checkin)
    if not group_mail_on():
        raise CheckInRefused("no_group_mail", checkin)
    if current.group_told_at is not None:
        return GroupTold(checkin, already=True)
    message = _stuck_message(checkin, note.strip()[:NOTE_MAX_LENGTH], checkin.week)
    # Handed over first, marked after: the message's fixed Message-ID makes a second hand-over
    # (two presses at once, or a press after a crash between the two steps) store nothing. No
    # transaction around the two: group mail commits its message, then queues its screening.
    if not all(tell(message, now) for tell in GROUP_TELLERS):
        raise CheckInRefused("group_mail_closed", checkin)
    marked = CheckIn.objects.filter(pk=current.pk, group_told_at__isnull=True).update(group_told_at=now)
    if marked:
        current.group_told_at = now
    return GroupTold(checkin, already=not marked)


# --- What the learner and the emails see of their check-ins ------------------------------------


def checkins_last_of(cohort_id: int, learner_ids, before_week: int | None) -> dict[int, dict]:
    """Each learner's latest check-in in the round for a week before `before_week` (any week when
    None): learner id -> {"week": n, "answer": "done"|"behind"|"stuck"}; learners with none are
    left out. One query for any number of learners (at most a round's weeks per learner)."""
    rows = CheckIn.objects.filter(cohort_id=cohort_id, learner_id__in=list(learner_ids))
    if before_week is not None:
        rows = rows.filter(week_number__lt=before_week)
    last: dict[int, dict] = {}
    for learner_id, week_number, answer in rows.order_by("learner_id", "-week_number").values_list("learner_id", "week_number", "answer"):
        last.setdefault(learner_id, {"week": week_number, "answer": answer})
    return last


@dataclass(frozen=True)
class WeekProgress:
    number: int
    title: str
    answer: str  # "" when they did not answer
    answer_label: str
    open: bool  # the answer window is open now: the week's email's links still change it


def enrollment_progress(enrollment: Enrollment, timezone_name: str, now: datetime.datetime) -> list[WeekProgress]:
    """The learner's weeks of their round so far (those whose email is due by `now` for a learner
    in `timezone_name`: theirs), each with their check-in. Two queries; none before the round's
    first email."""
    cohort, zone = enrollment.cohort, timezone_name
    if cohort is None:
        return []
    weeks_due = [n for n in range(1, cohort.week_count + 1) if week_email_due(cohort, n, zone) <= now]
    if not weeks_due:
        return []
    # One query: the course's weeks, each with the learner's answer (a week without its row in the
    # course still shows, with its number only: outer-joined in Python).
    answer = CheckIn.objects.filter(learner_id=enrollment.learner_id, cohort=cohort, week_number=OuterRef("number")).values("answer")[:1]
    rows = Week.objects.filter(course_id=cohort.course_id, number__in=weeks_due).annotate(answer=Subquery(answer))
    titles, answers = {}, {}
    for number, title, given in rows.values_list("number", "title", "answer"):
        titles[number] = title
        if given:
            answers[number] = given
    return [
        WeekProgress(
            number=n, title=titles.get(n, ""), answer=answers.get(n, ""),
            answer_label=Answer(answers[n]).label if n in answers else "",
            open=now < week_email_due(cohort, n + 1, zone),
        )
        for n in weeks_due
    ]
