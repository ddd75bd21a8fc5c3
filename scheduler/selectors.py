"""Questions the scheduler answers; nothing here writes."""

import datetime

from django.conf import settings

from scheduler.models import WORKER_HEARTBEAT, Heartbeat


def heartbeat_status(now: datetime.datetime, name: str = WORKER_HEARTBEAT) -> dict:
    """How long ago the heartbeat last arrived, and whether that is recent enough."""
    seen_at = Heartbeat.objects.filter(name=name).values_list("seen_at", flat=True).first()
    if seen_at is None:
        return {"ok": False, "last_seen": None, "seconds_ago": None}
    seconds_ago = max(0, int((now - seen_at).total_seconds()))
    return {
        "ok": seconds_ago <= settings.WORKER_HEARTBEAT_STALE_AFTER,
        "last_seen": seen_at.isoformat(),
        "seconds_ago": seconds_ago,
    }


# --- What an email's template sees: plain data only, never models ------------------------------

MADE_UP_MEMBERS = [
    {"first_name": "Grace", "timezone": "America/New_York"},
    {"first_name": "Alan", "timezone": "Europe/London"},
    {"first_name": "Katherine", "timezone": "America/Chicago"},
]


def _link(link: dict | None) -> dict | None:
    return {"title": link["title"], "url": link["url"]} if link else None


def week_context(week, week_count: int) -> dict:
    """A course week as a template sees it (plain data; sections that are empty are None or [])."""
    return {
        "number": week.number,
        "title": week.title,
        "is_last": week.number == week_count,
        "lecture": _link(week.lecture),
        "readings": [_link(link) for link in week.readings],
        "exercises": [_link(link) for link in week.exercises],
        "project": _link(week.project),
        "discussion": _link(week.discussion),
    }


def email_context(*, first_name, timezone_name, course, cohort, week, group, members, moved_from, links) -> dict:
    """Everything a template may use (the documented variables), from plain parts."""
    return {
        "learner": {"first_name": first_name or "there", "timezone": timezone_name},
        "course": {"title": course.title, "week_count": course.week_count},
        "cohort": {"name": cohort.name, "start_date": f"{cohort.start_date:%A %-d %B %Y}"} if cohort else None,
        "week": week,
        "group": (
            {
                "name": group.name,
                "discussion_url": group.discussion_url,
                "members": [{"first_name": m["first_name"], "timezone": m["timezone"]} for m in members],
                "email": "",
                "moved_from": moved_from,
            }
            if group
            else None
        ),
        "links": links,
    }


def sample_contexts() -> list[dict]:
    """Two made-up learners that exercise every branch a template may have: one with a group
    and every part of a week, one without a group in a week with no lecture, reading,
    exercise or project. Used to check templates before they are saved."""
    from types import SimpleNamespace

    course = SimpleNamespace(title="A Course", week_count=8)
    cohort = SimpleNamespace(name="Round 1", start_date=datetime.date(2026, 11, 30))
    link = {"title": "A link", "url": "https://example.org/"}
    full_week = {"number": 3, "title": "A week", "is_last": False, "lecture": link, "readings": [link], "exercises": [link], "project": link, "discussion": link}
    bare_week = {"number": 8, "title": "A last week", "is_last": True, "lecture": None, "readings": [], "exercises": [], "project": None, "discussion": None}
    group = SimpleNamespace(name="Group 1", discussion_url="https://example.org/g1")
    links = {"manage": "https://example.org/me/x/", "switch": "https://example.org/me/x/#switch", "unsubscribe": "https://example.org/u/x/", "site": "https://example.org/"}
    return [
        email_context(first_name="Ada", timezone_name="Europe/London", course=course, cohort=cohort, week=full_week,
                      group=group, members=MADE_UP_MEMBERS, moved_from="Group 9", links=links),
        email_context(first_name="", timezone_name="UTC", course=course, cohort=cohort, week=bare_week,
                      group=None, members=[], moved_from="", links=links),
    ]


def _week_for(course, kind: str, week_number: int) -> dict | None:
    from cohorts.selectors import course_week
    from scheduler.models import EmailKind

    number = week_number if kind == EmailKind.WEEK else (course.week_count if kind == EmailKind.COURSE_END else 1)
    week = course_week(course, number)
    return week_context(week, course.week_count) if week else None


def preview_links() -> dict[str, str]:
    """Links for previews and test sends: shaped like a learner's, working for nobody (no token)."""
    manage = f"{settings.SITE_URL}/me/sample-learner/"
    return {"manage": manage, "switch": f"{manage}#switch", "unsubscribe": f"{settings.SITE_URL}/unsubscribe/sample-learner/",
            "site": f"{settings.SITE_URL}/"}


def preview_context(course, cohort, kind: str, week_number: int, *, real_learner: bool = False) -> tuple[dict, str]:
    """The context to preview (or test-send) an email with, and whose it is.

    A made-up learner in a made-up group; with `real_learner` (for those who may see learners),
    a real confirmed learner of `cohort` (preferring one in a group): their name, time zone and
    group. The links are always made up: a working link would let whoever sees the preview act
    as that learner (their page, their data, unsubscribing them).
    """
    from signups.selectors import enrollment_sample, group_members

    week = _week_for(course, kind, week_number)
    enrollment = enrollment_sample(cohort) if cohort and real_learner else None
    if enrollment is None:
        from types import SimpleNamespace

        group = SimpleNamespace(name="Group 7", discussion_url="")
        context = email_context(
            first_name="Ada", timezone_name="Europe/London", course=course, cohort=cohort, week=week,
            group=group, members=MADE_UP_MEMBERS, moved_from="", links=preview_links(),
        )
        return context, "a made-up learner (Ada, Europe/London) in a made-up group"
    learner = enrollment.learner
    members = []
    if enrollment.group_id:
        members = [m for m in group_members([enrollment.group_id])[enrollment.group_id] if m["enrollment"] != enrollment.pk]
    context = email_context(
        first_name=learner.first_name, timezone_name=learner.timezone, course=course, cohort=cohort, week=week,
        group=enrollment.group, members=members, moved_from=enrollment.group_moved_from, links=preview_links(),
    )
    name = learner.first_name or "a learner with no first name"
    return context, f"{name} ({learner.timezone}), a learner of {cohort.name}, with made-up links"


def email_template_for(cohort, kind: str, week_number: int = 0):
    """The template in force for a cohort's email: the cohort's own override, else its course's."""
    from scheduler.models import EmailTemplate

    templates = EmailTemplate.objects.filter(kind=kind, week_number=week_number, current_version__isnull=False)
    return (
        templates.filter(cohort=cohort).select_related("current_version").first()
        or templates.filter(course_id=cohort.course_id, cohort=None).select_related("current_version").first()
    )


def email_contexts(cohort, week: dict | None, enrollments) -> dict[int, dict]:
    """The template context of each enrollment's email, for many learners at once.

    `enrollments` come with their learner and group loaded (select_related); the members
    of all their groups are read in one query, so a chunk of any size costs the same queries.
    """
    from signups.selectors import group_members
    from signups.services import learner_links

    enrollments = list(enrollments)
    members = group_members({enrollment.group_id for enrollment in enrollments if enrollment.group_id})
    contexts = {}
    for enrollment in enrollments:
        learner = enrollment.learner
        others = [m for m in members.get(enrollment.group_id, ()) if m["enrollment"] != enrollment.pk]
        contexts[enrollment.pk] = email_context(
            first_name=learner.first_name, timezone_name=learner.timezone, course=cohort.course, cohort=cohort,
            week=week, group=enrollment.group, members=others, moved_from=enrollment.group_moved_from,
            links=learner_links(learner),
        )
    return contexts


def cohort_delivery_summary(cohort) -> dict:
    """Per email of a cohort (welcome, each week, ...): how many rows are in each status, and
    the failed rows with their errors. Two queries."""
    from django.db.models import Count

    from scheduler.models import Delivery, EmailKind

    rows = (
        Delivery.objects.filter(cohort=cohort).values("kind", "week_number", "status").annotate(count=Count("pk"))
    )
    order = {EmailKind.WELCOME: 0, EmailKind.GROUP_INTRO: 1, EmailKind.WEEK: 2, EmailKind.COURSE_END: 3}
    emails: dict[tuple, dict] = {}
    for row in rows:
        counts = emails.setdefault((row["kind"], row["week_number"]), dict.fromkeys(Delivery.Status.values, 0))
        counts[row["status"]] += row["count"]
    summary = [
        {"kind": kind, "week": week, "label": f"Week {week}" if kind == EmailKind.WEEK else EmailKind(kind).label,
         "due": sum(counts.values()), **counts}
        for (kind, week), counts in sorted(emails.items(), key=lambda item: (order.get(item[0][0], 9), item[0][1]))
    ]
    failed = (
        Delivery.objects.filter(cohort=cohort, status=Delivery.Status.FAILED)
        .select_related("learner").order_by("-updated_at")[:50]
    )
    return {"emails": summary, "failed": list(failed), "paused": cohort.sending_paused}
