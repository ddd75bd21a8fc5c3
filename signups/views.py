from django.shortcuts import render
from django.utils import timezone

from cohorts.selectors import cohorts_open_for_signup, course_featured


def landing(request):
    """The home page: the course, its syllabus, how it works, and where to join."""
    today = timezone.now().date()
    course = course_featured(today)
    open_cohorts = list(cohorts_open_for_signup(today, course=course)) if course else []
    return render(request, "signups/landing.html", {"course": course, "open_cohorts": open_cohorts})
