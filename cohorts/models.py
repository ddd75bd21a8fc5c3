"""Courses, their weeks, and the cohorts (rounds) that run them.

A link anywhere in course content is a dict {"title": ..., "url": ...}; a list of links
(readings, exercises, the course's own links) is stored as a JSON list of them, so the
weekly email templates can loop over them without extra queries.
"""

import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

MAX_COURSE_WEEKS = 52


def week_begins(start_date: datetime.date, week_number: int) -> datetime.date:
    """Week N of a round begins N-1 weeks after its start date."""
    return start_date + datetime.timedelta(weeks=week_number - 1)


def week_send_date(start_date: datetime.date, week_number: int, send_weekday: int) -> datetime.date:
    """The day week N's email is due, on the learner's own calendar: the round's send weekday on
    or after the week's first day (scheduler.due turns it into a moment in each time zone)."""
    begins = week_begins(start_date, week_number)
    return begins + datetime.timedelta(days=(send_weekday - begins.weekday()) % 7)


def group_mail_address(group_slug: str) -> str:
    """A study group's email address, `<slug>@<GROUP_MAIL_DOMAIN>`; empty when group mail is off."""
    return f"{group_slug}@{settings.GROUP_MAIL_DOMAIN}" if settings.GROUP_MAIL_DOMAIN else ""


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
            if course.pk and self._kept_by_a_started_round(course):
                return
            raise ValidationError(
                {"number": f"Week {self.number} is outside this course, which has weeks 1 to {course.week_count}."}
            )

    def _kept_by_a_started_round(self, course: "Course") -> bool:
        # A round that has started keeps its length when the course shrinks
        # (cohorts.services.course_week_count_change), and its emails still need this week.
        today = timezone.now().date()
        return Cohort.objects.filter(course=course, start_date__lte=today, week_count__gte=self.number).exists()

    @property
    def lecture(self) -> dict | None:
        return _link(self.lecture_title, self.lecture_url)

    @property
    def project(self) -> dict | None:
        return _link(self.project_title, self.project_url)

    @property
    def discussion(self) -> dict | None:
        return _link(self.discussion_title, self.discussion_url)


class CohortStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    OPEN = "open", "Open for signup"
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"


class Weekday(models.IntegerChoices):
    MONDAY = 0, "Monday"
    TUESDAY = 1, "Tuesday"
    WEDNESDAY = 2, "Wednesday"
    THURSDAY = 3, "Thursday"
    FRIDAY = 4, "Friday"
    SATURDAY = 5, "Saturday"
    SUNDAY = 6, "Sunday"


class GroupStrategy(models.TextChoices):
    """How a cohort's study groups are formed (cohorts/grouping.py; issue 16's experiment)."""

    TIMEZONE_EXPERIENCE = "timezone_experience", "Time zone and experience"
    TIMEZONE = "timezone", "Time zone only"
    RANDOM = "random", "Random (the 2013 baseline)"
    EXPERIMENT = "experiment", "Experiment: two strategies compared"


# The strategies a group is formed by; an experiment splits its learners between two of them.
GROUP_FORMING_STRATEGIES = [choice for choice in GroupStrategy.choices if choice[0] != GroupStrategy.EXPERIMENT]


class Cohort(models.Model):
    """One round of a course: everyone in it starts week 1 on the same date.

    Several cohorts of one course run at once, staggered; a learner who falls behind
    drops back to a later one. Its status follows its dates (see `status_on`).
    """

    course = models.ForeignKey(Course, on_delete=models.PROTECT, related_name="cohorts")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    start_date = models.DateField(help_text="Week 1 begins on this date; week N begins N-1 weeks later.")
    # The course's number of weeks, copied: a round that has started keeps its length when the
    # course is edited (cohorts.services.course_week_count_change updates rounds yet to start).
    week_count = models.PositiveSmallIntegerField(
        "number of weeks", validators=[MinValueValidator(1), MaxValueValidator(MAX_COURSE_WEEKS)],
        blank=True, editable=False, help_text="Copied from the course; follows it until the round starts.",
    )
    signup_opens_on = models.DateField()
    signup_closes_on = models.DateField(help_text="The last day on which learners can sign up.")
    capacity = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most learners this cohort takes; empty for no limit."
    )
    send_weekday = models.PositiveSmallIntegerField(
        "weekly email day", choices=Weekday.choices, default=Weekday.MONDAY,
        help_text="The day each week's email should reach learners, in their own time zone.",
    )
    send_time = models.TimeField(
        "weekly email time", default=datetime.time(9, 0), help_text="Local time of day, in the learner's own time zone."
    )
    group_size_target = models.PositiveSmallIntegerField("target group size", default=10)
    group_size_min = models.PositiveSmallIntegerField("smallest group", default=6)
    group_size_max = models.PositiveSmallIntegerField("largest group", default=14)
    groups_form_on = models.DateField(
        "form groups on", null=True, blank=True, help_text="Empty: the day before the cohort starts."
    )
    discussion_url_pattern = models.CharField(
        "group discussion link", max_length=500, blank=True,
        help_text="A web address with {group} in it, replaced by each group's slug, "
        "e.g. https://forum.example.org/c/{group}. Empty: the week's own discussion link.",
    )
    group_strategy = models.CharField(
        "how groups are formed", max_length=30, choices=GroupStrategy.choices, default=GroupStrategy.TIMEZONE_EXPERIENCE,
        help_text="An experiment splits the round's learners at random between two strategies, each forming its own groups.",
    )
    experiment_strategies = models.JSONField(
        default=list, blank=True,
        help_text="For an experiment: the two strategies compared, e.g. [\"timezone_experience\", \"random\"].",
    )
    # Recorded each time the groups are formed (whatever the strategy): random groups and an
    # experiment's split are reproducible from it.
    experiment_seed = models.PositiveIntegerField(null=True, blank=True, editable=False)
    reform_by_activity = models.BooleanField(
        "offer moves to active learners in quiet groups", default=False,
        help_text="From week 3, learners who checked in \u201cI did this week\u201d the last two weeks, in groups "
        "gone quiet, are offered (by email, one click) a move into an active group of their time band.",
    )
    sending_paused = models.BooleanField(
        default=False, help_text="Stop this cohort's emails until unticked; what fell due meanwhile is sent then, or skipped once too old."
    )
    sending_paused_reason = models.TextField(
        blank=True, help_text="Why sending paused itself (a fault on our side, e.g. the provider refused our sender); empty when paused by hand."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["start_date", "name"]
        # What changes a round's course for its learners; the actions declare them (mooc/permissions.py).
        permissions = [
            ("start_next_round", "Can start the next round of a cohort"),
            ("close_signup", "Can close a cohort's signup now"),
            ("pause_sending", "Can pause and resume a cohort's emails"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(signup_closes_on__gte=F("signup_opens_on")),
                name="cohort_signup_closes_after_it_opens",
                violation_error_message="Signup must close on or after the day it opens.",
            ),
            models.CheckConstraint(
                condition=Q(group_size_min__gte=2, group_size_min__lte=F("group_size_target"))
                & Q(group_size_target__lte=F("group_size_max")),
                name="cohort_group_sizes_ordered",
                violation_error_message="Group sizes must satisfy 2 ≤ smallest ≤ target ≤ largest.",
            ),
        ]

    def __str__(self):
        return f"{self.course.title}: {self.name}"

    def save(self, *args, **kwargs):
        if self.week_count is None and self.course_id:
            self.week_count = self.course.week_count
        super().save(*args, **kwargs)

    @property
    def end_date(self) -> datetime.date:
        """The last day of the cohort's last week."""
        return self.start_date + datetime.timedelta(weeks=self.week_count or self.course.week_count, days=-1)

    @property
    def groups_formation_date(self) -> datetime.date:
        return self.groups_form_on or self.start_date - datetime.timedelta(days=1)

    def status_on(self, today: datetime.date) -> str:
        if today > self.end_date:
            return CohortStatus.FINISHED
        if today >= self.start_date:
            return CohortStatus.RUNNING
        if today >= self.signup_opens_on:
            return CohortStatus.OPEN
        return CohortStatus.DRAFT

    def group_discussion_url(self, group_slug: str) -> str:
        return self.discussion_url_pattern.replace("{group}", group_slug) if self.discussion_url_pattern else ""

    def clean(self):
        errors = {}
        if self.signup_opens_on and self.signup_closes_on and self.signup_closes_on < self.signup_opens_on:
            errors["signup_closes_on"] = "Signup cannot close before it opens."
        elif self.signup_closes_on and self.start_date and self.course_id and self.signup_closes_on > self.end_date:
            errors["signup_closes_on"] = f"Signup cannot close after the cohort's last week (it ends on {self.end_date:%-d %B %Y})."
        if self.group_size_min > self.group_size_max:
            errors["group_size_min"] = f"The smallest group ({self.group_size_min}) cannot be larger than the largest ({self.group_size_max})."
        elif self.group_size_min < 2:
            errors["group_size_min"] = "A group needs at least 2 people."
        elif not self.group_size_min <= self.group_size_target <= self.group_size_max:
            errors["group_size_target"] = (
                f"The target must lie between the smallest ({self.group_size_min}) and largest ({self.group_size_max}) group."
            )
        if self.discussion_url_pattern:
            if "{group}" not in self.discussion_url_pattern:
                errors["discussion_url_pattern"] = "The link must contain {group}, where each group's own name goes."
            else:
                try:
                    URLValidator(schemes=["http", "https"])(self.group_discussion_url("group-1"))
                except ValidationError:
                    errors["discussion_url_pattern"] = "This is not a web address (it must start with http:// or https://)."
        if self.group_strategy == GroupStrategy.EXPERIMENT:
            forming = {value for value, _ in GROUP_FORMING_STRATEGIES}
            chosen = self.experiment_strategies if isinstance(self.experiment_strategies, list) else []
            if len(chosen) != 2 or len(set(chosen)) != 2 or not set(chosen) <= forming:
                errors["experiment_strategies"] = "An experiment compares two different strategies: choose two of " + ", ".join(
                    label.lower() for _, label in GROUP_FORMING_STRATEGIES) + "."
        if errors:
            raise ValidationError(errors)


class StudyGroup(models.Model):
    """A small group of a cohort's learners, close in time zone, mixed in experience.

    Its slug is stable and unique across the site: the group's discussion link uses it, and
    so does its email address (group mail, groupmail/).
    """

    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="groups")
    number = models.PositiveIntegerField()
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=120, unique=True)
    discussion_url = models.URLField(max_length=500, blank=True)
    # The group's UTC offset band at formation, in minutes: where late joiners fit in.
    utc_offset_minutes = models.IntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    dissolved_at = models.DateTimeField(null=True, blank=True, help_text="Set when re-forming merged it away.")
    # How it was formed: its cohort's strategy, or in an experiment the arm it belongs to.
    strategy = models.CharField(max_length=30, choices=GROUP_FORMING_STRATEGIES, default=GroupStrategy.TIMEZONE_EXPERIENCE)

    class Meta:
        ordering = ["cohort", "number"]
        permissions = [("form_groups", "Can form and re-form a cohort's study groups")]
        constraints = [
            models.UniqueConstraint(fields=["cohort", "number"], name="study_group_number_unique_in_cohort"),
        ]

    def __str__(self):
        return self.name

    @property
    def mail_address(self) -> str:
        return group_mail_address(self.slug)
