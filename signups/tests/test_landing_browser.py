"""The home page in a real browser (Debian's chromium through Playwright)."""

import pytest

from cohorts.models import Course
from cohorts.services import demo_load
from mooc.testing.fixtures import fits_width

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo_course(clock):
    demo_load(today=clock.today())
    return Course.objects.prefetch_related("weeks").get(slug="gentle-python")


def test_the_syllabus_is_visible(page, live_server, demo_course):
    page.goto(live_server.url + "/")

    assert page.get_by_role("heading", level=1).inner_text() == demo_course.title
    syllabus = page.locator("ol.syllabus")
    assert syllabus.is_visible()
    for week in demo_course.weeks.all():
        heading = page.get_by_role("heading", name=f"Week {week.number}: {week.title}", exact=True)
        heading.scroll_into_view_if_needed()
        assert heading.is_visible(), week
    assert syllabus.get_by_role("link", name=demo_course.weeks.get(number=6).project["title"]).is_visible()
    # The stylesheet arrived from our own static files.
    assert page.evaluate("getComputedStyle(document.querySelector('.week')).borderStyle") == "solid"


def test_the_page_reads_on_a_phone(page_at, live_server, demo_course):
    page = page_at(360)
    page.goto(live_server.url + "/")
    assert fits_width(page)
    page.get_by_role("link", name="Join the next round").click()
    assert page.get_by_role("heading", name="Join the next round").is_visible()
