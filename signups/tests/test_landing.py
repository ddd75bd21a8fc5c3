"""The home page: the course, its syllabus with every link, how it works, and where to join."""

import datetime

import pytest
from django.urls import reverse

from cohorts.models import Course
from cohorts.services import demo_load

SATURDAY = datetime.datetime(2026, 11, 21, 12, 0, tzinfo=datetime.UTC)

# The demo's rounds are planned from SATURDAY, and the page is read on that day.
pytestmark = [pytest.mark.django_db, pytest.mark.clock(SATURDAY)]


@pytest.fixture
def demo_course():
    demo_load(today=SATURDAY.date())
    return Course.objects.get(slug="gentle-python")


def test_every_week_and_every_link_is_shown(client, demo_course):
    response = client.get(reverse("signups:landing"))

    assert response.status_code == 200
    page = response.content.decode()
    assert demo_course.title in page
    for week in demo_course.weeks.all():
        assert f"Week {week.number}: {week.title}".replace("'", "&#x27;") in page
        links = [week.lecture, week.project, week.discussion, *week.readings, *week.exercises]
        for link in filter(None, links):
            assert f'href="{link["url"]}"' in page, (week.number, link)
    for link in demo_course.links:
        assert f'href="{link["url"]}"' in page


def test_how_the_course_works_and_the_next_round(client, demo_course):
    page = client.get("/").content.decode()

    assert "How it works" in page
    assert "One email a week" in page and "small study group" in page
    assert "No penalty for going faster or slower" in page
    assert 'id="join"' in page
    assert "Round 2</strong> starts on Monday 30 November 2026" in page
    assert "Round 1</strong>" not in page  # running, signup closed


def test_a_round_that_takes_late_joiners_says_so_rather_than_a_deadline_after_its_start(client, demo_course):
    page = client.get("/").content.decode()

    assert "starts on Monday 30 November 2026; you can join until 6 December" in page
    assert "sign up by" not in page


def test_the_time_zone_hint_says_each_thing_once(client, demo_course):
    page = client.get("/").content.decode()

    assert page.count("Detected from your browser") == 1  # shown by static/js/timezone.js when it filled the field
    assert "Start typing a city to change it" in page


def test_the_page_costs_a_fixed_number_of_queries(client, demo_course, django_assert_num_queries):
    # the next open cohort, the course, its weeks, the course's open cohorts
    with django_assert_num_queries(4):
        client.get("/")


def test_a_site_without_a_course_says_so(client):
    response = client.get("/")

    assert response.status_code == 200
    assert "No course yet" in response.content.decode()


def test_the_stylesheet_is_served_from_the_site(client, demo_course):
    page = client.get("/").content.decode()
    assert 'href="/static/css/site.css"' in page
    head = page.split("<body", 1)[0]
    assert "://" not in head  # nothing loaded from another site (no CDN)
