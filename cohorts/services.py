"""Verbs that change courses and cohorts."""

import datetime
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max

from cohorts.models import Cohort, Course, GroupStrategy, StudyGroup, Week

DEMO_COURSE_FILE = Path(__file__).resolve().parent / "fixtures" / "gentle-python.yaml"


@dataclass
class DemoLoadResult:
    course: Course
    course_created: bool
    cohorts_created: list[Cohort] = field(default_factory=list)
    cohorts_kept: list[Cohort] = field(default_factory=list)


def _link_fields(prefix: str, link: dict | None) -> dict:
    link = link or {}
    return {f"{prefix}_title": link.get("title", ""), f"{prefix}_url": link.get("url", "")}


def _links(items: list[dict] | None) -> list[dict]:
    return [{"title": item.get("title") or item["url"], "url": item["url"]} for item in items or []]


def course_definition_read(path: Path) -> dict:
    """Read a course definition file (YAML: `course` and `weeks`, as in our demo fixture).

    Raises ValidationError when the file lacks either part.
    """
    # libyaml's parser when PyYAML has it: ten times faster than the pure-Python one.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open(encoding="utf-8") as definition_file:
        definition = yaml.load(definition_file, Loader=loader) or {}
    if not isinstance(definition.get("course"), dict) or not isinstance(definition.get("weeks"), list):
        raise ValidationError(f"{path.name}: a course definition needs a 'course' mapping and a 'weeks' list.")
    return definition


@transaction.atomic
def course_create_from_definition(definition: dict) -> tuple[Course, bool]:
    """Create a course and its weeks from a definition, unless a course with its slug exists.

    Idempotent: an existing course is returned untouched (organizers may have edited it
    in admin since), with created=False. Every row is validated before anything is saved;
    an invalid definition raises ValidationError and saves nothing.
    """
    about = definition["course"]
    existing = Course.objects.filter(slug=about["slug"]).first()
    if existing is not None:
        return existing, False

    course = Course(
        title=about["title"],
        slug=about["slug"],
        summary=about.get("summary", "").strip(),
        week_count=about["weeks"],
        links=_links(about.get("links")),
    )
    course.full_clean()
    course.save()

    weeks = []
    for item in definition["weeks"]:
        week = Week(
            course=course,
            number=item["number"],
            title=item["title"],
            readings=_links(item.get("readings")),
            exercises=_links(item.get("exercises")),
            **_link_fields("lecture", item.get("lecture")),
            **_link_fields("project", item.get("project")),
            **_link_fields("discussion", item.get("discussion")),
        )
        week.full_clean(validate_unique=False)
        weeks.append(week)
    numbers = [week.number for week in weeks]
    if len(set(numbers)) != len(numbers):
        raise ValidationError(f"{course.slug}: two weeks share a number ({sorted(numbers)}).")
    Week.objects.bulk_create(weeks)
    return course, True


@dataclass
class WeekCountChange:
    """What a change of a course's length did: the rounds that follow it, and those that keep theirs."""

    week_count: int
    followed: int
    kept: list[Cohort]


def course_week_count_change(course: Course, today: datetime.date) -> WeekCountChange:
    """Give the course's rounds that have not started (start after `today`) its number of weeks.

    A round that has started keeps the length it had: its learners were told it, and its
    emails so far counted "week N of its length". Idempotent; one UPDATE and one SELECT.
    Returns how many rounds follow and which (started or finished) keep another length.
    """
    followed = Cohort.objects.filter(course=course, start_date__gt=today).update(week_count=course.week_count)
    kept = Cohort.objects.filter(course=course, start_date__lte=today).exclude(week_count=course.week_count)
    return WeekCountChange(week_count=course.week_count, followed=followed, kept=list(kept.order_by("start_date", "name")))


def monday_after_next(today: datetime.date) -> datetime.date:
    """The start of a round planned `today`: the Monday of the week after next."""
    next_monday = today + datetime.timedelta(days=7 - today.weekday())
    return next_monday + datetime.timedelta(weeks=1)


def demo_cohorts_plan(course: Course, today: datetime.date) -> list[Cohort]:
    """The demo's two rounds as of `today`: one that started two weeks ago, one open for signup.

    Signup for each round runs from four weeks before its start through its first week.
    """
    running_start = today - datetime.timedelta(weeks=2)
    next_start = monday_after_next(today)
    return [
        Cohort(
            course=course,
            name=name,
            slug=f"{course.slug}-{suffix}",
            start_date=start,
            signup_opens_on=start - datetime.timedelta(weeks=4),
            signup_closes_on=start + datetime.timedelta(days=6),
        )
        for name, suffix, start in [("Round 1", "round-1", running_start), ("Round 2", "round-2", next_start)]
    ]


@transaction.atomic
def demo_load(today: datetime.date, definition_path: Path = DEMO_COURSE_FILE) -> DemoLoadResult:
    """Install the demo course ("A Gentle Introduction to Python") and two cohorts of it.

    Idempotent: what exists (matched by slug) is kept as it is, so running it again,
    on any day, changes nothing. Transactional: it saves all or nothing.
    """
    course, course_created = course_create_from_definition(course_definition_read(definition_path))
    result = DemoLoadResult(course=course, course_created=course_created)
    for planned in demo_cohorts_plan(course, today):
        existing = Cohort.objects.filter(slug=planned.slug).first()
        if existing is not None:
            result.cohorts_kept.append(existing)
            continue
        planned.full_clean()
        planned.save()
        result.cohorts_created.append(planned)
    return result


def cohort_lock(cohort_id: int) -> Cohort:
    """Lock a cohort's row until the end of the transaction: its groups change one writer at a time."""
    return Cohort.objects.select_for_update().select_related("course").get(pk=cohort_id)


def study_groups_create(cohort: Cohort, centre_offsets: list[int], strategies: list[str] | None = None) -> list[StudyGroup]:
    """Create one group per offset, numbered after the cohort's existing groups. One query.

    Each gets a name, a slug unique across the site (for its discussion link and, later,
    its email address), the cohort's discussion link for it and the strategy it was formed by:
    `strategies`, one per offset, or else the cohort's own (ValueError for an experiment's
    groups without theirs: which arm a group belongs to is not the cohort's to say).
    """
    if strategies is None:
        if cohort.group_strategy == GroupStrategy.EXPERIMENT:
            raise ValueError(f"{cohort} runs an experiment: each new group needs the strategy of its arm.")
        strategies = [cohort.group_strategy] * len(centre_offsets)
    first = (StudyGroup.objects.filter(cohort=cohort).aggregate(last=Max("number"))["last"] or 0) + 1
    groups = []
    for number, (offset, strategy) in enumerate(zip(centre_offsets, strategies, strict=True), start=first):
        slug = f"{cohort.slug}-g{number}"
        groups.append(
            StudyGroup(
                cohort=cohort, number=number, name=f"Group {number}", slug=slug,
                discussion_url=cohort.group_discussion_url(slug), utc_offset_minutes=offset, strategy=strategy,
            )
        )
    return StudyGroup.objects.bulk_create(groups)


def cohort_seed_record(cohort: Cohort, seed: int) -> None:
    """Record the seed the cohort's groups were formed with (an experiment's split is reproducible from it)."""
    Cohort.objects.filter(pk=cohort.pk).update(experiment_seed=seed)
    cohort.experiment_seed = seed


def cohort_group_links_follow(cohort: Cohort, old_pattern: str) -> int:
    """Give the cohort's current groups the links of its group discussion link, after it changed
    from `old_pattern`: a group formed with no link, or with the old pattern's, gets the new one's.

    A link set by hand on a group's own page is kept. Idempotent. Returns how many groups changed.
    """
    groups = StudyGroup.objects.filter(cohort=cohort, dissolved_at__isnull=True)
    changed = []
    for group in groups:
        followed = cohort.group_discussion_url(group.slug)
        old = old_pattern.replace("{group}", group.slug) if old_pattern else ""
        if group.discussion_url in ("", old) and group.discussion_url != followed:
            group.discussion_url = followed
            changed.append(group)
    return StudyGroup.objects.bulk_update(changed, ["discussion_url"])


def study_groups_dissolve(group_ids, now: datetime.datetime) -> int:
    """Mark groups as merged away by re-forming (kept, for history and links)."""
    return StudyGroup.objects.filter(pk__in=group_ids, dissolved_at__isnull=True).update(dissolved_at=now)


def cohort_close_signup(cohort: Cohort, today: datetime.date) -> bool:
    """Close signup now: yesterday becomes the last day. False when it was closed already."""
    if cohort.signup_closes_on < today:
        return False
    cohort.signup_closes_on = today - datetime.timedelta(days=1)
    cohort.signup_opens_on = min(cohort.signup_opens_on, cohort.signup_closes_on)
    cohort.save(update_fields=["signup_closes_on", "signup_opens_on"])
    return True


def cohort_next_name(cohort: Cohort, start: datetime.date) -> str:
    """The next round's name, in the series of this one's: "Round 2" after "Round 1" (a name that
    ends in a number counts on), else "Round starting 28 December 2026"."""
    numbered = re.fullmatch(r"(.*?)(\d+)", cohort.name)
    if not numbered:
        return f"Round starting {start:%-d %B %Y}"
    number = int(numbered[2]) + 1
    while Cohort.objects.filter(course=cohort.course_id, name=f"{numbered[1]}{number}").exists():
        number += 1  # "Round 2" started from "Round 1" already: this one is "Round 3"
    return f"{numbered[1]}{number}"


def cohort_next_plan(cohort: Cohort, weeks_later: int) -> Cohort:
    """The round `cohort_start_next` would create, not saved: for the organizer to check its
    name and dates first. Raises ValidationError when that cohort would be invalid."""
    shift = datetime.timedelta(weeks=weeks_later)
    start = cohort.start_date + shift
    slug = f"{cohort.course.slug}-{start:%Y-%m-%d}"
    suffix = 2
    while Cohort.objects.filter(slug=slug).exists():
        slug, suffix = f"{cohort.course.slug}-{start:%Y-%m-%d}-{suffix}", suffix + 1
    new = Cohort(
        course=cohort.course,
        name=cohort_next_name(cohort, start),
        slug=slug,
        start_date=start,
        signup_opens_on=cohort.signup_opens_on + shift,
        signup_closes_on=cohort.signup_closes_on + shift,
        capacity=cohort.capacity,
        send_weekday=cohort.send_weekday,
        send_time=cohort.send_time,
        group_size_target=cohort.group_size_target,
        group_size_min=cohort.group_size_min,
        group_size_max=cohort.group_size_max,
        groups_form_on=cohort.groups_form_on + shift if cohort.groups_form_on else None,
        discussion_url_pattern=cohort.discussion_url_pattern,
        group_strategy=cohort.group_strategy,
        experiment_strategies=list(cohort.experiment_strategies),
    )
    new.full_clean()
    return new


def cohort_start_next(cohort: Cohort, weeks_later: int) -> Cohort:
    """A new cohort with this one's settings, starting `weeks_later` weeks after it.

    Its signup window keeps the same distance to its start; its name continues this one's
    (cohort_next_name) and its slug follows the start date. Raises ValidationError when that
    cohort would be invalid.
    """
    new = cohort_next_plan(cohort, weeks_later)
    new.save()
    return new


def cohort_sending_pause(cohort: Cohort, paused: bool) -> bool:
    """Pause or resume a cohort's emails (an organizer). False when it was so already.
    Resuming clears the reason a fault left."""
    return bool(
        Cohort.objects.filter(pk=cohort.pk, sending_paused=not paused).update(sending_paused=paused, sending_paused_reason="")
    )


def cohort_sending_pause_for_fault(cohort_id: int, reason: str) -> bool:
    """Sending pauses itself when the provider says our side is wrong (settings, sender, account):
    every further email would fail the same way. An organizer resumes once it is fixed."""
    return bool(Cohort.objects.filter(pk=cohort_id, sending_paused=False).update(sending_paused=True, sending_paused_reason=reason))
