"""The organizer dashboard's admin pages: a round's (/admin/cohorts/cohort/<id>/dashboard/) and
the course's rounds side by side (/admin/cohorts/course/<id>/dashboard/), with their CSV exports.

Thin: the numbers come from scheduler/dashboard.py; this lays them out, draws the funnel as an
SVG on the server (no script, nothing from elsewhere: the pages keep to the admin's CSP) and
writes CSV. Anyone who may see cohorts (cohorts.view_cohort) sees the counts; the learners' list
also needs signups.view_learner. Other users get 403.
"""

import csv
from functools import partial

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from cohorts.admin import CohortAdmin, CourseAdmin, PageLink
from cohorts.models import Cohort, Course
from scheduler import dashboard as selectors

VIEW_PERMISSION = "cohorts.view_cohort"
LEARNERS_PERMISSION = "signups.view_learner"

# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection):
# such a cell is written with a leading apostrophe, which makes it text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class _Echo:
    """csv.writer's file: each row written comes straight back, to stream."""

    def write(self, text):
        return text


def csv_response(file_name: str, rows) -> StreamingHttpResponse:
    """`rows` (an iterable of lists) as a CSV download, written as it is read."""
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse((writer.writerow([csv_cell(value) for value in row]) for row in rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{file_name}"'
    return response


# --- The funnel chart ------------------------------------------------------------------------

ROW_HEIGHT = 36  # a line of text over a bar, per step
BAR_TOP, BAR_HEIGHT = 18, 12


def _bar_class(key: str) -> str:
    if key.endswith("_opened"):
        return "funnel-bar-opened"
    if key.startswith("week_") or key == "course_end":
        return "funnel-bar-reached"
    return "funnel-bar-learners"


def funnel_chart(steps, chart_id: str) -> dict:
    """Where each step's text and bar go. Widths are percentages of the chart's width, so the
    SVG fills any width (390 px to a desktop) with its text at its own size, never scaled."""
    largest = max((step.count for step in steps), default=0) or 1
    bars = []
    for index, step in enumerate(steps):
        top = index * ROW_HEIGHT
        width = step.count / largest * 100
        bars.append({
            "step": step, "text_y": top + 13, "bar_y": top + BAR_TOP, "bar_height": BAR_HEIGHT,
            # A step with someone in it shows a sliver, however small its share.
            "width": f"{max(width, 0.5) if step.count else 0:.2f}", "class": _bar_class(step.key),
            "percent": "" if step.share is None else f"{step.share * 100:.0f}%",
        })
    return {"id": chart_id, "bars": bars, "height": len(steps) * ROW_HEIGHT + 4}


# --- The pages -------------------------------------------------------------------------------


def _allowed(request, permission: str = VIEW_PERMISSION) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied


def _cohort(cohort_id: int) -> Cohort:
    return get_object_or_404(Cohort.objects.select_related("course"), pk=cohort_id)


COHORT_TABLES = {
    "funnel": selectors.funnel_csv_rows,
    "weeks": selectors.weeks_csv_rows,
    "quiet-groups": selectors.quiet_groups_csv_rows,
    "suppressions": selectors.suppressions_csv_rows,
}


def cohort_dashboard_view(model_admin, request, cohort_id):
    _allowed(request)
    cohort = _cohort(cohort_id)
    board = selectors.cohort_dashboard(cohort, timezone.now())
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Dashboard: {cohort}",
        "opts": Cohort._meta,
        "cohort": cohort,
        "board": board,
        "chart": funnel_chart(board.funnel, f"funnel-{cohort.pk}"),
        "chart_title": f"Funnel of {cohort.name}",
        "chart_note": "" if board.delivered_reported else "The provider reported no delivery: emails sent are counted instead",
        "csv_links": [
            (label, reverse("admin:cohorts_cohort_dashboard_csv", args=[cohort.pk, table]))
            for label, table in [("Funnel", "funnel"), ("Per week", "weeks"), ("Quietest groups", "quiet-groups"), ("Suppressions", "suppressions")]
        ],
        "learners_csv": (
            reverse("admin:cohorts_cohort_dashboard_csv", args=[cohort.pk, "learners"])
            if request.user.has_perm(LEARNERS_PERMISSION) else None
        ),
        "outcomes_url": _outcomes_url(request, "admin:cohorts_cohort_outcomes", cohort.pk),
    }
    return TemplateResponse(request, "admin/scheduler/dashboard/cohort.html", context)


def _outcomes_url(request, url_name: str, pk: int) -> str | None:
    """The outcome report's link, for those who may open it (scheduler/admin_outcomes.py)."""
    from scheduler.admin_outcomes import outcomes_allowed  # it uses this module's CSV writer

    return reverse(url_name, args=[pk]) if outcomes_allowed(request.user) else None


def cohort_dashboard_csv_view(model_admin, request, cohort_id, table):
    _allowed(request)
    if table == "learners":
        _allowed(request, LEARNERS_PERMISSION)
        cohort = _cohort(cohort_id)
        return csv_response(f"{cohort.slug}-learners.csv", selectors.learners_csv_rows(cohort))
    if table not in COHORT_TABLES:
        raise Http404
    cohort = _cohort(cohort_id)
    board = selectors.cohort_dashboard(cohort, timezone.now())
    return csv_response(f"{cohort.slug}-{table}.csv", COHORT_TABLES[table](board))


def course_dashboard_view(model_admin, request, course_id):
    _allowed(request)
    course = get_object_or_404(Course, pk=course_id)
    board = selectors.course_dashboard(course)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Dashboard: {course.title}, every round",
        "opts": Course._meta,
        "course": course,
        "board": board,
        # One row per step, one column per round (rounds may differ in length: a step a round lacks is blank).
        "steps": _course_steps(board),
        "charts": [
            (cohort, reported, funnel_chart(funnel, f"funnel-{cohort.pk}")) for cohort, funnel, reported in board.rounds
        ],
        "any_unreported": any(not reported for _, _, reported in board.rounds),
        "csv_url": reverse("admin:cohorts_course_dashboard_csv", args=[course.pk]),
        "outcomes_url": _outcomes_url(request, "admin:cohorts_course_outcomes", course.pk),
    }
    return TemplateResponse(request, "admin/scheduler/dashboard/course.html", context)


def _course_steps(board) -> list[tuple[str, list]]:
    """[(step label, [that step of each round, or None])], the longest round's steps in order."""
    order: dict[str, str] = {}
    for _, funnel, _ in board.rounds:
        for step in funnel:
            # A round counting "sent" names its steps so; the row keeps the first name seen.
            order.setdefault(step.key.replace("_sent", "_delivered"), step.label)
    by_round = [{step.key.replace("_sent", "_delivered"): step for step in funnel} for _, funnel, _ in board.rounds]
    return [(label, [steps.get(key) for steps in by_round]) for key, label in order.items()]


def course_dashboard_csv_view(model_admin, request, course_id):
    _allowed(request)
    course = get_object_or_404(Course, pk=course_id)
    return csv_response(f"{course.slug}-rounds-funnel.csv", selectors.course_funnel_csv_rows(selectors.course_dashboard(course)))


# --- Where the pages hang: the cohort's and course's admin ------------------------------------


def _cohort_urls(model_admin):
    view = model_admin.admin_site.admin_view
    return [
        path("<int:cohort_id>/dashboard/", view(partial(cohort_dashboard_view, model_admin)), name="cohorts_cohort_dashboard"),
        path(
            "<int:cohort_id>/dashboard/<slug:table>.csv", view(partial(cohort_dashboard_csv_view, model_admin)),
            name="cohorts_cohort_dashboard_csv",
        ),
    ]


def _course_urls(model_admin):
    view = model_admin.admin_site.admin_view
    return [
        path("<int:course_id>/dashboard/", view(partial(course_dashboard_view, model_admin)), name="cohorts_course_dashboard"),
        path("<int:course_id>/dashboard/funnel.csv", view(partial(course_dashboard_csv_view, model_admin)), name="cohorts_course_dashboard_csv"),
    ]


def _link(url_name):
    def url(obj, user):
        return reverse(url_name, args=[obj.pk]) if user.has_perm(VIEW_PERMISSION) else None

    return url


@admin.display(description="dashboard")
def cohort_dashboard_column(cohort) -> str:
    # The list is only shown to those who may see cohorts, who may see the dashboard too.
    return format_html('<a href="{}">Dashboard</a>', reverse("admin:cohorts_cohort_dashboard", args=[cohort.pk]))


CohortAdmin.page_links.append(PageLink("Dashboard", _cohort_urls, _link("admin:cohorts_cohort_dashboard")))
CourseAdmin.page_links.append(PageLink("Dashboard of its rounds", _course_urls, _link("admin:cohorts_course_dashboard")))
CohortAdmin.list_display = [*CohortAdmin.list_display, cohort_dashboard_column]
