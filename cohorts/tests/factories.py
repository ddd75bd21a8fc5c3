import datetime

import factory
from django.utils import timezone

from cohorts.models import Cohort, Course, Week
from cohorts.services import monday_after_next


class CourseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Course

    title = factory.Sequence(lambda n: f"Course {n}")
    slug = factory.Sequence(lambda n: f"course-{n}")
    summary = "A course built from open resources."
    week_count = 8
    links = factory.LazyFunction(lambda: [{"title": "Course home", "url": "https://example.org/course"}])


class WeekFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Week

    course = factory.SubFactory(CourseFactory)
    number = factory.Sequence(lambda n: n % 8 + 1)
    title = factory.LazyAttribute(lambda week: f"Topic of week {week.number}")
    lecture_title = factory.LazyAttribute(lambda week: f"Lecture {week.number}")
    lecture_url = factory.LazyAttribute(lambda week: f"https://example.org/lectures/{week.number}")
    readings = factory.LazyAttribute(lambda week: [{"title": f"Reading {week.number}", "url": f"https://example.org/r/{week.number}"}])
    exercises = factory.LazyAttribute(lambda week: [{"title": f"Exercise {week.number}", "url": f"https://example.org/e/{week.number}"}])
    project_title = ""
    project_url = ""


class CohortFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Cohort

    course = factory.SubFactory(CourseFactory)
    name = factory.Sequence(lambda n: f"Round {n}")
    slug = factory.Sequence(lambda n: f"round-{n}")
    # Always ahead and open for signup, on the test's clock (mooc.testing.clock).
    start_date = factory.LazyFunction(lambda: monday_after_next(timezone.localdate()))
    signup_opens_on = factory.LazyAttribute(lambda cohort: cohort.start_date - datetime.timedelta(weeks=4))
    signup_closes_on = factory.LazyAttribute(lambda cohort: cohort.start_date + datetime.timedelta(days=6))
