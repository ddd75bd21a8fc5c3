"""Questions about courses and cohorts; nothing here writes."""

import datetime

from django.conf import settings
from django.db.models import Min, Prefetch, Q, QuerySet

from cohorts.models import MAX_COURSE_WEEKS, Cohort, Course, StudyGroup, Week, week_begins, week_send_date


def cohorts_open_for_signup(today: datetime.date, course: Course | None = None) -> QuerySet[Cohort]:
    """Cohorts (of `course`, when given) whose signup window includes `today`, soonest start first."""
    cohorts = Cohort.objects.filter(signup_opens_on__lte=today, signup_closes_on__gte=today)
    if course is not None:
        cohorts = cohorts.filter(course=course)
    return cohorts.select_related("course").order_by("start_date", "name")


def course_featured(today: datetime.date, with_weeks: bool = True) -> Course | None:
    """The course the home page presents (and signs people up for), its weeks loaded in order.

    The course of the next cohort open for signup; failing that, the first course.
    None when the site has no course yet.
    """
    courses = Course.objects.all()
    if with_weeks:
        courses = courses.prefetch_related(Prefetch("weeks", queryset=Week.objects.order_by("number")))
    next_cohort = cohorts_open_for_signup(today).first()
    if next_cohort is not None:
        return courses.get(pk=next_cohort.course_id)
    return courses.order_by("pk").first()


def cohort_week_on(cohort: Cohort, today: datetime.date) -> int:
    """The round's week on `today`, counted on: 0 before it starts, 1, 2, ... and on past its last week."""
    return 0 if today < cohort.start_date else (today - cohort.start_date).days // 7 + 1


def cohort_week_number(cohort: Cohort, today: datetime.date) -> int | None:
    """The week of the course a cohort is in today: 1..week_count, None before it starts or after it ends."""
    number = cohort_week_on(cohort, today)
    return number if 1 <= number <= cohort.week_count else None


def cohort_by_slug(slug: str) -> Cohort | None:
    return Cohort.objects.select_related("course").filter(slug=slug).first()


def study_group_by_slug(slug: str) -> StudyGroup | None:
    """A group that still exists (not merged away by re-forming), with its round and course."""
    return StudyGroup.objects.select_related("cohort__course").filter(slug=slug, dissolved_at__isnull=True).first()


def cohort_by_id(cohort_id: int) -> Cohort | None:
    return Cohort.objects.select_related("course").filter(pk=cohort_id).first()


def cohorts_due_for_group_formation(today: datetime.date) -> QuerySet[Cohort]:
    """Cohorts whose formation date has come, that have no groups yet and have not started long ago.

    A cohort already running still qualifies (beat was down on the day, say); one finished does not.
    """
    due = Q(groups_form_on__lte=today) | Q(groups_form_on__isnull=True, start_date__lte=today + datetime.timedelta(days=1))
    return (
        Cohort.objects.filter(due, start_date__gte=today - datetime.timedelta(weeks=MAX_COURSE_WEEKS))
        .exclude(groups__isnull=False)
        .select_related("course")
    )


def study_groups_of(cohort: Cohort) -> QuerySet[StudyGroup]:
    """The cohort's groups that re-forming has not merged away, in number order."""
    return StudyGroup.objects.filter(cohort=cohort, dissolved_at__isnull=True).order_by("number")


def cohort_next_week_due(cohort: Cohort, today: datetime.date) -> tuple[int, datetime.date] | None:
    """The next week of the cohort whose email is still to come: (number, the date it begins)."""
    for number in range(1, cohort.week_count + 1):
        begins = week_begins(cohort.start_date, number)
        if begins >= today:
            return number, begins
    return None


def cohort_next_weekly_email(cohort: Cohort, today: datetime.date) -> tuple[int, datetime.date] | None:
    """The next week whose email is due on `today` or later: (number, the day it is due).

    Week N's email is due on the cohort's send weekday on or after the week's first day, on the
    learner's own calendar (scheduler.due reckons the moment; this is its date). None once the
    last week's email day has passed.
    """
    for number in range(1, cohort.week_count + 1):
        due = week_send_date(cohort.start_date, number, cohort.send_weekday)
        if due >= today:
            return number, due
    return None


def cohort_has_groups(cohort: Cohort) -> bool:
    """Whether the cohort's groups have been formed (dissolved ones count: formation happened)."""
    return StudyGroup.objects.filter(cohort=cohort).exists()


def cohort_groups_formed_at(cohort: Cohort):
    """When the cohort's groups were first formed (its first group's creation), or None."""
    return StudyGroup.objects.filter(cohort=cohort).aggregate(first=Min("created_at"))["first"]


def cohort_groups_have_place_to_talk(cohort: Cohort) -> bool:
    """Whether the cohort's groups get somewhere of their own to talk: group mail (each group's
    own address, GROUP_MAIL_DOMAIN set), or a discussion link each (the cohort's group
    discussion link, with {group} in it).

    The one place this is asked (forming groups warns, the cohort's page warns).
    """
    return bool(settings.GROUP_MAIL_DOMAIN or cohort.discussion_url_pattern)


def course_week(course: Course, number: int) -> Week | None:
    return Week.objects.filter(course=course, number=number).first()


def cohorts_paused_by_fault() -> list[str]:
    """The slugs of cohorts whose sending paused itself (a fault on our side): for /healthz, which
    is public, so the provider's words stay on the cohort's admin page."""
    paused = Cohort.objects.filter(sending_paused=True).exclude(sending_paused_reason="").order_by("slug")
    return list(paused.values_list("slug", flat=True))


def cohorts_reforming_by_activity(today: datetime.date) -> list[Cohort]:
    """Running rounds that offer moves out of quiet groups (Cohort.reform_by_activity) and are
    in their week 3 or later: the first in which a group can be judged quiet."""
    candidates = Cohort.objects.filter(
        reform_by_activity=True, start_date__lte=today - datetime.timedelta(weeks=2),
        start_date__gte=today - datetime.timedelta(weeks=MAX_COURSE_WEEKS),
    ).select_related("course")
    return [cohort for cohort in candidates if today <= cohort.end_date]
