"""load_demo installs the demo course and two cohorts, and running it again changes nothing."""

import datetime
from pathlib import Path

import pytest
import yaml
from django.core.exceptions import ValidationError
from django.forms.models import model_to_dict

from cohorts.models import Cohort, Course, Week
from cohorts.selectors import cohorts_open_for_signup
from cohorts.services import DEMO_COURSE_FILE, demo_load

SATURDAY = datetime.date(2026, 11, 21)
MONDAY = datetime.date(2026, 11, 23)

# The demo is planned from SATURDAY; the clock starts then too.
pytestmark = [pytest.mark.django_db, pytest.mark.clock(datetime.datetime.combine(SATURDAY, datetime.time(12), tzinfo=datetime.UTC))]


def snapshot():
    """Every row load_demo touches, field by field."""
    return {
        model.__name__: sorted((model_to_dict(row) | {"pk": row.pk} for row in model.objects.all()), key=lambda r: r["pk"])
        for model in (Course, Week, Cohort)
    }


def test_the_demo_course_has_its_eight_weeks_and_links():
    demo_load(today=SATURDAY)

    course = Course.objects.get(slug="gentle-python")
    assert course.title == "A Gentle Introduction to Python"
    assert course.week_count == 8
    assert [week.number for week in course.weeks.order_by("number")] == list(range(1, 9))
    first = course.weeks.get(number=1)
    assert first.lecture["title"].startswith("6.00SC Lecture 2")
    assert len(first.readings) == 3
    assert first.exercises == [{"title": "Codecademy Python, Units 1-2", "url": "https://www.codecademy.com/tracks/python"}]
    assert first.project["url"].endswith("MIT6_189IAP11_hw1.pdf")
    assert first.discussion is None  # OpenStudy is gone: each group talks in its own place
    last = course.weeks.get(number=8)
    assert last.lecture is None and last.readings == []  # week 8 is project time: no lecture, no reading
    assert {link["url"] for link in course.links} >= {"https://www.codecademy.com/tracks/python", "http://mechanicalmooc.org"}


# Hosts known to serve https; the demo's other hosts are left as the original had them.
HTTPS_HOSTS = ("ocw.mit.edu", "www.codecademy.com", "mechanicalmooc.wordpress.com", "docs.python.org")


def demo_urls(course) -> list[str]:
    links = list(course.links)
    for week in course.weeks.all():
        links += [link for link in [week.lecture, week.project, week.discussion, *week.readings, *week.exercises] if link]
    return [link["url"] for link in links]


def test_the_demo_course_sends_nobody_to_openstudy_nor_to_http_where_https_is_served():
    demo_load(today=SATURDAY)

    course = Course.objects.get(slug="gentle-python")
    urls = demo_urls(course)
    assert len(urls) > 40
    assert not [url for url in urls if "openstudy" in url.lower()]
    assert not [url for url in urls if url.startswith(tuple(f"http://{host}/" for host in HTTPS_HOSTS))]
    assert all(week.discussion is None for week in course.weeks.all())
    assert "OpenStudy" not in course.summary


def test_the_demo_fixture_is_loaded_in_full():
    definition = yaml.safe_load(DEMO_COURSE_FILE.read_text())
    demo_load(today=SATURDAY)
    for item in definition["weeks"]:
        week = Week.objects.get(course__slug="gentle-python", number=item["number"])
        assert week.title == item["title"]
        assert [link["url"] for link in week.readings] == [link["url"] for link in item.get("readings", [])]
        assert [link["url"] for link in week.exercises] == [link["url"] for link in item.get("exercises", [])]


def test_one_cohort_is_running_and_the_next_opens_for_signup():
    result = demo_load(today=SATURDAY)

    running, upcoming = sorted(result.cohorts_created, key=lambda cohort: cohort.start_date)
    assert running.start_date == datetime.date(2026, 11, 7)  # two weeks ago
    assert upcoming.start_date == datetime.date(2026, 11, 30)  # the Monday after next
    assert upcoming.start_date.weekday() == 0
    assert list(cohorts_open_for_signup(SATURDAY)) == [upcoming]


def test_on_a_monday_the_monday_after_next_is_two_weeks_away():
    result = demo_load(today=MONDAY)
    assert max(cohort.start_date for cohort in result.cohorts_created) == datetime.date(2026, 12, 7)


def test_running_it_twice_changes_nothing():
    demo_load(today=SATURDAY)
    before = snapshot()

    again = demo_load(today=SATURDAY)
    later = demo_load(today=SATURDAY + datetime.timedelta(days=10))

    assert snapshot() == before
    assert not again.course_created and not again.cohorts_created
    assert not later.course_created and not later.cohorts_created
    assert len(later.cohorts_kept) == 2


def test_what_organizers_edited_is_kept():
    demo_load(today=SATURDAY)
    Week.objects.filter(course__slug="gentle-python", number=3).update(title="Functions, our way")

    demo_load(today=SATURDAY)

    assert Week.objects.get(course__slug="gentle-python", number=3).title == "Functions, our way"


def test_an_invalid_definition_saves_nothing(tmp_path: Path):
    definition = yaml.safe_load(DEMO_COURSE_FILE.read_text())
    definition["weeks"][-1]["number"] = 9  # an 8-week course
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(definition))

    with pytest.raises(ValidationError):
        demo_load(today=SATURDAY, definition_path=broken)

    assert not Course.objects.exists() and not Week.objects.exists() and not Cohort.objects.exists()
