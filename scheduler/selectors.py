"""Questions the scheduler answers; nothing here writes."""

import datetime
import uuid
from typing import NamedTuple

from django.conf import settings

from cohorts.models import group_mail_address
from cohorts.selectors import cohort_week_on
from scheduler.models import Heartbeat, heartbeat_name


def _heartbeat_age(seen_at: datetime.datetime | None, now: datetime.datetime) -> dict:
    """How long ago a heartbeat last arrived, and whether that is recent enough."""
    if seen_at is None:
        return {"ok": False, "last_seen": None, "seconds_ago": None}
    seconds_ago = max(0, int((now - seen_at).total_seconds()))
    return {
        "ok": seconds_ago <= settings.WORKER_HEARTBEAT_STALE_AFTER,
        "last_seen": seen_at.isoformat(),
        "seconds_ago": seconds_ago,
    }


def workers_status(now: datetime.datetime) -> dict:
    """Each worker queue's heartbeat (settings.WORKER_QUEUES), in one query: {"ok": every queue's
    worker reports in, "queues": {queue: its age and whether recent}}, and the default queue's
    age at the top."""
    names = {heartbeat_name(queue): queue for queue in settings.WORKER_QUEUES}
    seen = dict(Heartbeat.objects.filter(name__in=names).values_list("name", "seen_at"))
    queues = {queue: _heartbeat_age(seen.get(name), now) for name, queue in names.items()}
    return {**queues[settings.CELERY_TASK_DEFAULT_QUEUE], "ok": all(status["ok"] for status in queues.values()), "queues": queues}


# What waits while a queue's worker is silent (README, "Three queues").
_QUEUE_WORK = {
    "DELIVERY_QUEUE": "the weekly emails and group messages",
    "TRANSACTIONAL_QUEUE": "confirmations, manage links and test sends",
}


def worker_absence(now: datetime.datetime) -> str | None:
    """Why emails will not go out by themselves now: a worker queue with no recent heartbeat (a
    sentence for the admin's banner), or None while every queue's worker reports in."""
    status = workers_status(now)
    if status["ok"]:
        return None
    start = ("Start the workers (make run starts them; see Procfile.dev), or run "
             "“python manage.py send_due” for one pass by hand.")
    queues = status["queues"]
    default = queues[settings.CELERY_TASK_DEFAULT_QUEUE]
    if not default["ok"]:
        if default["last_seen"] is None:
            return f"No worker has ever reported in: nothing is sent, and no job runs, until one does. {start}"
        return (f"No worker has reported in for {_since(default)}: "
                f"nothing is sent, and no job runs, until one does. {start}")
    silent = []
    for queue, queue_status in queues.items():
        if queue_status["ok"]:
            continue
        waiting = " and ".join(what for setting, what in _QUEUE_WORK.items() if getattr(settings, setting) == queue) or "its tasks"
        since = "has never reported in" if queue_status["last_seen"] is None else f"has not reported in for {_since(queue_status)}"
        silent.append(f"The worker of the “{queue}” queue {since}: {waiting} wait until it does.")
    return " ".join(silent) + " Start the workers (make run starts them; see Procfile.dev)."


def _since(status: dict) -> str:
    minutes = status["seconds_ago"] // 60
    seen = datetime.datetime.fromisoformat(status["last_seen"]).astimezone(datetime.UTC)
    return f"{minutes} minute{'s' if minutes != 1 else ''} (last at {seen:%a %-d %b %H:%M} UTC)"


def sending_when(now: datetime.datetime) -> str:
    """When something queued now goes out, for a message to an organizer: "within a minute"
    only while a worker reports in."""
    return "within a minute" if worker_absence(now) is None else "once the workers run (not every one has reported in recently)"


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


def group_page_url(links: dict, group_slug: str) -> str:
    """A member's link to their group's page (groupmail's, under their own page's signed link)."""
    return f"{links['manage']}group/{group_slug}/"


def email_context(
    *, first_name, timezone_name, course, cohort, week, group, members, moved_from, links, current_week=0, dropped_back_from="",
    last_checkin=None,
) -> dict:
    """Everything a template may use (the documented variables), from plain parts. `links` holds
    the learner's links and, when the email is about a week, its check-in links (else empty);
    `last_checkin` is {"week", "answer"} or None (signups.checkins.checkins_last_of)."""
    return {
        "learner": {"first_name": first_name or "there", "timezone": timezone_name, "dropped_back_from": dropped_back_from},
        # A round keeps the length the course had when it started.
        "course": {"title": course.title, "week_count": getattr(cohort, "week_count", None) or course.week_count},
        "cohort": (
            {"name": cohort.name, "start_date": f"{cohort.start_date:%A %-d %B %Y}", "current_week": current_week}
            if cohort else None
        ),
        "week": week,
        "group": (
            {
                "name": group.name,
                # Where the group talks: the cohort's forum for it, else the group's own page here.
                "discussion_url": group.discussion_url or group_page_url(links, group.slug),
                "page_url": group_page_url(links, group.slug),
                "members": [{"first_name": m["first_name"], "timezone": m["timezone"]} for m in members],
                # The group's address, which the email's Reply-To names too; empty when group mail is off.
                "email": group.mail_address,
                "moved_from": moved_from,
            }
            if group
            else None
        ),
        "links": {**NO_CHECKIN_LINKS, **links},
        # The learner's last answer before this email's week: one paragraph may adapt to it.
        "checkin": {"last": {"week": last_checkin["week"], "answer": last_checkin["answer"]} if last_checkin else None},
    }


# An email about no week (a welcome before the round is known, say) has no check-in links.
NO_CHECKIN_LINKS = {"checkin_done": "", "checkin_behind": "", "checkin_stuck": ""}


# The save check's made-up learners are as big as real ones get, so that a template's cost on
# them bounds its cost on anyone: every string as long as its field allows, a full group.
SAMPLE_LINKS_PER_SECTION = 5  # readings and exercises in the sample week (the demo course has at most 3)


def _longest(model, field: str) -> int:
    return model._meta.get_field(field).max_length


def _sample_text(label: str, length: int) -> str:
    """`label`, padded to exactly `length` characters."""
    return f"{label} ".ljust(length, "x")[:length]


def _sample_url(path: str, length: int) -> str:
    return _sample_text(f"https://example.org/{path}/", length)


def _sample_links() -> dict:
    """Links shaped and sized like a real learner's (learner_links: SITE_URL/me/<signed token>/,
    checkin_links: SITE_URL/checkin/<signed token>/done/), with a made-up path in place of the
    tokens: nothing here opens anyone's page."""
    from cohorts.models import MAX_COURSE_WEEKS
    from signups.tokens import checkin_token, learner_token

    # The tokens themselves are thrown away: only their longest lengths are kept.
    checkin_length = len(checkin_token(uuid.UUID(int=0), 2**31 - 1, MAX_COURSE_WEEKS))
    return preview_links("sample-".ljust(len(learner_token(uuid.UUID(int=0))), "x"), "sample-".ljust(checkin_length, "x"))


def sample_contexts() -> list[dict]:
    """Two made-up learners that exercise every branch a template may have, used to check
    templates before they are saved: one in a full study group (the largest a cohort forms
    by default) in a week with every part and SAMPLE_LINKS_PER_SECTION readings and
    exercises; one without a group in the course's last week, with no lecture, reading,
    exercise or project. Every string is as long as the field it comes from allows (names,
    titles, links), and links are as long as a real learner's, so that the limits a render
    has (scheduler/sandbox.py) are met on these samples before they are met on anyone real."""
    from types import SimpleNamespace

    from cohorts.models import MAX_COURSE_WEEKS, Cohort, Course, StudyGroup, Week
    from signups.models import Enrollment, Learner

    title = _longest(Week, "lecture_title")
    url = _longest(Week, "lecture_url")

    def link(label: str) -> dict:
        return {"title": _sample_text(label, title), "url": _sample_url(label.lower().replace(" ", "-"), url)}

    course = SimpleNamespace(title=_sample_text("A Course", _longest(Course, "title")), week_count=MAX_COURSE_WEEKS)
    # The longest date: a Wednesday in September.
    cohort = SimpleNamespace(name=_sample_text("Round 1", _longest(Cohort, "name")), start_date=datetime.date(2026, 9, 30))
    full_week = {
        "number": MAX_COURSE_WEEKS - 1, "title": _sample_text("A week", _longest(Week, "title")), "is_last": False,
        "lecture": link("A lecture"),
        "readings": [link(f"Reading {n}") for n in range(1, SAMPLE_LINKS_PER_SECTION + 1)],
        "exercises": [link(f"Exercise {n}") for n in range(1, SAMPLE_LINKS_PER_SECTION + 1)],
        "project": link("A project"), "discussion": link("A discussion"),
    }
    bare_week = {"number": MAX_COURSE_WEEKS, "title": _sample_text("The last week", _longest(Week, "title")), "is_last": True,
                 "lecture": None, "readings": [], "exercises": [], "project": None, "discussion": None}
    slug = "group-1-".ljust(_longest(StudyGroup, "slug"), "x")
    group = SimpleNamespace(name=_sample_text("Group 1", _longest(StudyGroup, "name")), slug=slug,
                            discussion_url=_sample_url("group-1", _longest(StudyGroup, "discussion_url")),
                            mail_address=group_mail_address(slug) or f"{slug}@groups.example.org")
    name, zone = _longest(Learner, "first_name"), _longest(Learner, "timezone")
    others = Cohort._meta.get_field("group_size_max").default - 1  # group.members: everyone but the learner
    members = [{"first_name": _sample_text(f"Member {n}", name), "timezone": _sample_text("America/Argentina/ComodRivadavia", zone)}
               for n in range(1, others + 1)]
    links = _sample_links()
    moved_from = _sample_text("Group 9", _longest(Enrollment, "group_moved_from"))
    dropped_back_from = _sample_text("Round 0", _longest(Cohort, "name"))
    return [
        email_context(first_name=_sample_text("Ada", name), timezone_name=_sample_text("Europe/London", zone), course=course,
                      cohort=cohort, week=full_week, group=group, members=members, moved_from=moved_from, links=links,
                      current_week=0, dropped_back_from=dropped_back_from,
                      last_checkin={"week": MAX_COURSE_WEEKS - 2, "answer": "stuck"}),
        email_context(first_name="", timezone_name="UTC", course=course, cohort=cohort, week=bare_week,
                      group=None, members=[], moved_from="", links=links, current_week=MAX_COURSE_WEEKS),
    ]


def _week_for(course, cohort, kind: str, week_number: int) -> dict | None:
    from cohorts.selectors import course_week
    from scheduler.models import EmailKind

    week_count = cohort.week_count if cohort else course.week_count
    number = week_number if kind == EmailKind.WEEK else (week_count if kind == EmailKind.COURSE_END else 1)
    week = course_week(course, number)
    return week_context(week, week_count) if week else None


def preview_links(made_up: str = "sample-learner", made_up_checkin: str = "sample-checkin") -> dict[str, str]:
    """Links for previews, test sends and the save check: shaped like a learner's
    (signups.services.learner_links, signups.checkins.checkin_links), with `made_up` and
    `made_up_checkin` where the signed tokens go, so they work for nobody."""
    manage = f"{settings.SITE_URL}/me/{made_up}/"
    checkin = f"{settings.SITE_URL}/checkin/{made_up_checkin}/"
    return {"manage": manage, "switch": f"{manage}#switch", "unsubscribe": f"{settings.SITE_URL}/unsubscribe/{made_up}/",
            "site": f"{settings.SITE_URL}/", "checkin_done": f"{checkin}done/", "checkin_behind": f"{checkin}behind/",
            "checkin_stuck": f"{checkin}stuck/"}


def preview_context(course, cohort, kind: str, week_number: int, *, real_learner: bool = False) -> tuple[dict, str]:
    """The context to preview (or test-send) an email with, and whose it is.

    A made-up learner in a made-up group; with `real_learner` (for those who may see learners),
    a real confirmed learner of `cohort` (preferring one in a group): their name, time zone and
    group. The links are always made up: a working link would let whoever sees the preview act
    as that learner (their page, their data, unsubscribing them).
    """
    from signups.selectors import enrollment_sample, group_members

    from django.utils import timezone

    week = _week_for(course, cohort, kind, week_number)
    current_week = cohort_week_on(cohort, timezone.localdate()) if cohort else 0
    enrollment = enrollment_sample(cohort) if cohort and real_learner else None
    if enrollment is None:
        from types import SimpleNamespace

        group = SimpleNamespace(name="Group 7", slug="group-7", discussion_url="", mail_address=group_mail_address("group-7"))
        context = email_context(
            first_name="Ada", timezone_name="Europe/London", course=course, cohort=cohort, week=week,
            group=group, members=MADE_UP_MEMBERS, moved_from="", links=preview_links(), current_week=current_week,
        )
        return context, "a made-up learner (Ada, Europe/London) in a made-up group"
    from signups.checkins import checkins_last_of

    learner = enrollment.learner
    members = []
    if enrollment.group_id:
        members = [m for m in group_members([enrollment.group_id])[enrollment.group_id] if m["enrollment"] != enrollment.pk]
    context = email_context(
        first_name=learner.first_name, timezone_name=learner.timezone, course=course, cohort=cohort, week=week,
        group=enrollment.group, members=members, moved_from=enrollment.group_moved_from, links=preview_links(),
        current_week=current_week, dropped_back_from=enrollment.switched_from.name if enrollment.switched_from_id else "",
        last_checkin=checkins_last_of(cohort.pk, [learner.pk], week["number"] if week else None).get(learner.pk),
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


def _moves_told(cohort, enrollments) -> set[int]:
    """Enrollments whose last group move a weekly email has told already: one was sent after
    the move. A move is told once, in the next weekly email only. One query, only when
    someone in `enrollments` was moved."""
    from django.db.models import Max

    from scheduler.models import Delivery, EmailKind

    moved = {enrollment.learner_id: enrollment for enrollment in enrollments if enrollment.group_moved_at}
    if not moved:
        return set()
    last_sent = (
        Delivery.objects.filter(cohort=cohort, kind=EmailKind.WEEK, status=Delivery.Status.SENT, learner_id__in=list(moved))
        .values("learner_id").annotate(last=Max("sent_at")).values_list("learner_id", "last")
    )
    return {moved[learner_id].pk for learner_id, last in last_sent if last and last >= moved[learner_id].group_moved_at}


def email_contexts(cohort, week: dict | None, enrollments, today: datetime.date) -> dict[int, dict]:
    """The template context of each enrollment's email on `today`, for many learners at once.

    `enrollments` come with their learner, group and switched_from loaded (select_related);
    the members of all their groups are read in one query, their last check-ins in one more
    (and the moves already told in one more, when someone was moved), so a chunk of any size
    costs the same queries. An email about a week (`week`) carries that week's check-in links.
    """
    from signups.checkins import checkin_links, checkins_last_of
    from signups.selectors import group_members
    from signups.services import learner_links

    enrollments = list(enrollments)
    members = group_members({enrollment.group_id for enrollment in enrollments if enrollment.group_id})
    last_checkins = checkins_last_of(cohort.pk, [enrollment.learner_id for enrollment in enrollments], week["number"] if week else None)
    told = _moves_told(cohort, enrollments)
    current_week = cohort_week_on(cohort, today)
    contexts = {}
    for enrollment in enrollments:
        learner = enrollment.learner
        others = [m for m in members.get(enrollment.group_id, ()) if m["enrollment"] != enrollment.pk]
        contexts[enrollment.pk] = email_context(
            first_name=learner.first_name, timezone_name=learner.timezone, course=cohort.course, cohort=cohort,
            week=week, group=enrollment.group, members=others,
            moved_from="" if enrollment.pk in told else enrollment.group_moved_from,
            links=learner_links(learner) | (checkin_links(learner.public_id, cohort.pk, week["number"]) if week else {}),
            current_week=current_week, dropped_back_from=enrollment.switched_from.name if enrollment.switched_from_id else "",
            last_checkin=last_checkins.get(learner.pk),
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
    return {"emails": summary, "failed": list(failed), "paused": cohort.sending_paused, "paused_reason": cohort.sending_paused_reason}


# --- What each learner did with their weekly emails (the provider's tracking events) ------------


class WeekActivity(NamedTuple):
    """A learner's weekly emails in one round: the last week whose email was sent, delivered,
    opened and clicked (None: none yet). From the ledger's first moments (scheduler/events.py):
    an open implies a delivery, a click an open."""

    last_sent_week: int | None
    last_delivered_week: int | None
    last_opened_week: int | None
    last_clicked_week: int | None


def learner_activity(learner_ids) -> dict[int, dict[int, WeekActivity]]:
    """{learner id: {cohort id: WeekActivity}} for the learners given, over their weekly emails.
    One query, aggregated in the database; learners with no weekly email are left out."""
    from django.db.models import Max, Q

    from scheduler.models import Delivery, EmailKind

    rows = (
        Delivery.objects.filter(learner_id__in=list(learner_ids), kind=EmailKind.WEEK)
        .values("learner_id", "cohort_id")
        .annotate(
            sent=Max("week_number", filter=Q(status=Delivery.Status.SENT)),
            delivered=Max("week_number", filter=Q(delivered_at__isnull=False)),
            opened=Max("week_number", filter=Q(opened_at__isnull=False)),
            clicked=Max("week_number", filter=Q(clicked_at__isnull=False)),
        )
        .order_by()
    )
    activity: dict[int, dict[int, WeekActivity]] = {}
    for row in rows:
        activity.setdefault(row["learner_id"], {})[row["cohort_id"]] = WeekActivity(
            row["sent"], row["delivered"], row["opened"], row["clicked"]
        )
    return activity


# How many of a learner's delivered weekly emails in a row, unopened, make them quiet.
QUIET_AFTER_WEEKS = 3


def learners_quiet(cohort, learner_ids=None, weeks: int = QUIET_AFTER_WEEKS) -> set[int]:
    """The ids of the round's quiet learners (README, "Quiet learners"): none of the last `weeks`
    weekly emails delivered to them was opened, and at least `weeks` were delivered (so the
    round has sent that many). Only when the provider reports opens for the round at all (one
    of its weekly emails was opened): otherwise open tracking is off, and nobody is quiet.

    Put otherwise: the learner has at least `weeks` delivered weekly emails of weeks after the
    last one they opened (or after none, if they never opened one). Two queries whatever the
    round's size, the last opened week found per email through the ledger's unique index.
    `learner_ids`: only among these (all the round's learners when None)."""
    from django.db.models import Count, F, OuterRef, Subquery, Value
    from django.db.models.functions import Coalesce

    from scheduler.models import Delivery, EmailKind

    weekly = Delivery.objects.filter(cohort=cohort, kind=EmailKind.WEEK)
    if not weekly.filter(opened_at__isnull=False).exists():
        return set()
    last_opened = (
        weekly.filter(learner_id=OuterRef("learner_id"), opened_at__isnull=False).order_by("-week_number").values("week_number")[:1]
    )
    delivered = weekly.filter(delivered_at__isnull=False)
    if learner_ids is not None:
        delivered = delivered.filter(learner_id__in=list(learner_ids))
    unopened_in_a_row = (
        delivered.alias(last_opened=Coalesce(Subquery(last_opened), Value(0)))
        .filter(week_number__gt=F("last_opened"))
        .values("learner_id")
        .annotate(unopened=Count("pk"))
        .filter(unopened__gte=weeks)
        .order_by()
        .values_list("learner_id", flat=True)
    )
    return set(unopened_in_a_row)
