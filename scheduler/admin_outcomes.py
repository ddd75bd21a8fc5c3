"""The outcome report's admin pages, beside the dashboards: a round's
(/admin/cohorts/cohort/<id>/outcomes/) and the course's rounds pooled
(/admin/cohorts/course/<id>/outcomes/), with their CSV exports.

Thin: the figures come from scheduler/outcomes.py. The report is built from the learners'
check-ins, so it takes the permission to see them (signups.view_checkin: Organizers); a Course
editor or a Viewer gets 403, on the page and on its CSV alike.
"""

from functools import partial

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from cohorts.admin import CohortAdmin, CourseAdmin, PageLink
from cohorts.models import Cohort, Course
from scheduler import outcomes as selectors
from scheduler.admin_dashboard import csv_response
from scheduler.proportions import SMALLEST_COUNT_FOR_TEST
from signups.group_checkins import QUIET_CHECKIN_SHARE, QUIET_WEEKS

OUTCOMES_PERMISSION = "signups.view_checkin"


def outcomes_allowed(user) -> bool:
    return user.has_perm("cohorts.view_cohort") and user.has_perm(OUTCOMES_PERMISSION)


def _allowed(request) -> None:
    if not outcomes_allowed(request.user):
        raise PermissionDenied


def _footnote() -> dict:
    return {"smallest_count": SMALLEST_COUNT_FOR_TEST, "quiet_percent": f"{QUIET_CHECKIN_SHARE * 100:.0f}", "quiet_weeks": QUIET_WEEKS}


def cohort_outcomes_view(model_admin, request, cohort_id):
    _allowed(request)
    cohort = get_object_or_404(Cohort.objects.select_related("course"), pk=cohort_id)
    outcomes = selectors.cohort_outcomes(cohort, timezone.localdate())
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Outcome report: {cohort}",
        "opts": Cohort._meta,
        "cohort": cohort,
        "outcomes": outcomes,
        "report": outcomes.report,
        "csv_url": reverse("admin:cohorts_cohort_outcomes_csv", args=[cohort.pk]),
        **_footnote(),
    }
    return TemplateResponse(request, "admin/scheduler/outcomes/cohort.html", context)


def cohort_outcomes_csv_view(model_admin, request, cohort_id):
    _allowed(request)
    cohort = get_object_or_404(Cohort.objects.select_related("course"), pk=cohort_id)
    rows = selectors.cohort_outcomes_csv_rows(selectors.cohort_outcomes(cohort, timezone.localdate()))
    return csv_response(f"{cohort.slug}-outcomes.csv", rows)


def course_outcomes_view(model_admin, request, course_id):
    _allowed(request)
    course = get_object_or_404(Course, pk=course_id)
    outcomes = selectors.course_outcomes(course, timezone.localdate())
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Outcome report: {course.title}, every round",
        "opts": Course._meta,
        "course": course,
        "outcomes": outcomes,
        "report": outcomes.pooled,
        "csv_url": reverse("admin:cohorts_course_outcomes_csv", args=[course.pk]),
        **_footnote(),
    }
    return TemplateResponse(request, "admin/scheduler/outcomes/course.html", context)


def course_outcomes_csv_view(model_admin, request, course_id):
    _allowed(request)
    course = get_object_or_404(Course, pk=course_id)
    return csv_response(f"{course.slug}-outcomes.csv", selectors.course_outcomes_csv_rows(selectors.course_outcomes(course, timezone.localdate())))


def _cohort_urls(model_admin):
    view = model_admin.admin_site.admin_view
    return [
        path("<int:cohort_id>/outcomes/", view(partial(cohort_outcomes_view, model_admin)), name="cohorts_cohort_outcomes"),
        path("<int:cohort_id>/outcomes.csv", view(partial(cohort_outcomes_csv_view, model_admin)), name="cohorts_cohort_outcomes_csv"),
    ]


def _course_urls(model_admin):
    view = model_admin.admin_site.admin_view
    return [
        path("<int:course_id>/outcomes/", view(partial(course_outcomes_view, model_admin)), name="cohorts_course_outcomes"),
        path("<int:course_id>/outcomes.csv", view(partial(course_outcomes_csv_view, model_admin)), name="cohorts_course_outcomes_csv"),
    ]


def _link(url_name):
    def url(obj, user):
        return reverse(url_name, args=[obj.pk]) if outcomes_allowed(user) else None

    return url


CohortAdmin.page_links.append(PageLink("Outcome report", _cohort_urls, _link("admin:cohorts_cohort_outcomes")))
CourseAdmin.page_links.append(PageLink("Outcome report of its rounds", _course_urls, _link("admin:cohorts_course_outcomes")))
