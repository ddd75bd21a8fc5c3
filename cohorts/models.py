"""Courses, their weeks, and the cohorts (rounds) that run them.

A link anywhere in course content is a dict {"title": ..., "url": ...}; a list of links
(readings, exercises, the course's own links) is stored as a JSON list of them, so the
weekly email templates can loop over them without extra queries.
"""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

MAX_COURSE_WEEKS = 52


def _link(title: str, url: str) -> dict | None:
    return {"title": title or url, "url": url} if url else None


class Course(models.Model):
    """A course stitched together from open resources; each cohort runs it once."""

    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    summary = models.TextField(blank=True)
    week_count = models.PositiveSmallIntegerField(
        "number of weeks",
        validators=[MinValueValidator(1), MaxValueValidator(MAX_COURSE_WEEKS)],
    )
    links = models.JSONField(default=list, blank=True, help_text="The course's own resources, as a list of links.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title"]
        constraints = [
            models.CheckConstraint(
                condition=Q(week_count__gte=1, week_count__lte=MAX_COURSE_WEEKS), name="course_week_count_in_range"
            ),
        ]

    def __str__(self):
        return self.title


class Week(models.Model):
    """One week of a course: what to watch, read, practise and build, and where to talk about it."""

    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="weeks")
    number = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    title = models.CharField(max_length=200)
    lecture_title = models.CharField(max_length=300, blank=True)
    lecture_url = models.URLField(max_length=500, blank=True)
    readings = models.JSONField(default=list, blank=True)
    exercises = models.JSONField(default=list, blank=True)
    project_title = models.CharField(max_length=300, blank=True)
    project_url = models.URLField(max_length=500, blank=True)
    discussion_title = models.CharField(max_length=300, blank=True)
    discussion_url = models.URLField(max_length=500, blank=True)

    class Meta:
        ordering = ["course", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["course", "number"],
                name="week_number_unique_in_course",
                violation_error_message="This course already has a week with this number.",
            ),
            models.CheckConstraint(condition=Q(number__gte=1), name="week_number_positive"),
        ]

    def __str__(self):
        return f"Week {self.number}: {self.title}"

    def clean(self):
        # The course may be unsaved (a new course with its weeks inline in admin).
        course = getattr(self, "course", None)
        if course is not None and self.number and course.week_count and self.number > course.week_count:
            raise ValidationError(
                {"number": f"Week {self.number} is outside this course, which has weeks 1 to {course.week_count}."}
            )

    @property
    def lecture(self) -> dict | None:
        return _link(self.lecture_title, self.lecture_url)

    @property
    def project(self) -> dict | None:
        return _link(self.project_title, self.project_url)

    @property
    def discussion(self) -> dict | None:
        return _link(self.discussion_title, self.discussion_url)


class Cohort(models.Model):
    """One round of a course: everyone in it starts week 1 on the same date.

    Several cohorts of one course run at once, staggered; a learner who falls behind
    drops back to a later one.
    """

    course = models.ForeignKey(Course, on_delete=models.PROTECT, related_name="cohorts")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    start_date = models.DateField(help_text="Week 1 begins on this date; week N begins N-1 weeks later.")
    signup_opens_on = models.DateField()
    signup_closes_on = models.DateField(help_text="The last day on which learners can sign up.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["start_date", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(signup_closes_on__gte=F("signup_opens_on")),
                name="cohort_signup_closes_after_it_opens",
                violation_error_message="Signup must close on or after the day it opens.",
            ),
        ]

    def __str__(self):
        return f"{self.course.title}: {self.name}"
