"""Failed admin logins are throttled per username and address, through the real login form."""

import datetime
import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client, RequestFactory

from mooc.login_throttle import login_client_ip

pytestmark = pytest.mark.django_db

PASSWORD = "the-right-password-for-staff"
HOME, OFFICE = "203.0.113.7", "198.51.100.20"


@pytest.fixture
def organizer(django_user_model):
    return django_user_model.objects.create_superuser("organizer", "organizer@example.org", PASSWORD)


def log_in(password: str, address: str = HOME, username: str = "organizer", **headers) -> tuple[Client, object]:
    """Log in to /admin/ as a browser does: load the form (and its CSRF token), then post it.

    Returns the browser's client, to see whether it is now logged in, and the answer to the post.
    """
    browser = Client(enforce_csrf_checks=True, REMOTE_ADDR=address, headers=headers)
    form = browser.get("/admin/login/?next=/admin/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    answer = browser.post(
        "/admin/login/?next=/admin/",
        {"csrfmiddlewaretoken": token, "username": username, "password": password, "next": "/admin/"},
    )
    return browser, answer


def refused(answer) -> bool:
    return answer.status_code == 200 and "Please enter the correct username and password" in answer.content.decode()


def locked_out(answer) -> bool:
    return answer.status_code == 429 and "Too many failed logins" in answer.content.decode()


def logged_in(browser, answer) -> bool:
    return answer.status_code == 302 and answer["Location"] == "/admin/" and browser.get("/admin/").status_code == 200


def fail(times: int, address: str = HOME, **headers) -> list:
    return [log_in("a-wrong-guess", address, **headers)[1] for _ in range(times)]


def test_five_wrong_passwords_lock_that_username_from_that_address(organizer, settings):
    *first_four, fifth = fail(5)

    assert all(refused(answer) for answer in first_four)
    assert locked_out(fifth)
    assert "15 minutes" in fifth.content.decode()
    browser, answer = log_in(PASSWORD)
    assert locked_out(answer)
    assert browser.get("/admin/").status_code == 302  # to the login page: not logged in
    # A stranger failing on purpose does not lock the organizer out everywhere.
    assert logged_in(*log_in(PASSWORD, address=OFFICE))


def test_the_lock_lifts_once_the_lockout_passes_without_another_attempt(organizer, clock):
    fail(5)

    clock.shift(datetime.timedelta(minutes=14))
    assert locked_out(log_in(PASSWORD)[1])  # and this attempt starts the wait again
    clock.shift(datetime.timedelta(minutes=14))
    assert locked_out(log_in(PASSWORD)[1])
    clock.shift(datetime.timedelta(minutes=15, seconds=1))
    assert logged_in(*log_in(PASSWORD))


def test_failures_far_apart_never_add_up_to_a_lock(organizer, clock):
    for _ in range(3):
        fail(4)
        clock.shift(datetime.timedelta(minutes=16))

    assert logged_in(*log_in(PASSWORD))


def test_an_administrator_can_lift_the_lock_at_once(organizer):
    fail(5)

    call_command("axes_reset_username", "organizer", stdout=StringIO())

    assert logged_in(*log_in(PASSWORD))


def test_a_good_login_forgets_the_typos_before_it(organizer):
    fail(4)
    assert logged_in(*log_in(PASSWORD))
    fail(4)
    assert logged_in(*log_in(PASSWORD))


def test_the_limit_and_the_lockout_are_settings(organizer, settings, clock):
    settings.AXES_FAILURE_LIMIT, settings.ADMIN_LOGIN_LOCKOUT_MINUTES = 2, 60
    settings.AXES_COOLOFF_TIME = datetime.timedelta(minutes=60)

    assert [refused(answer) for answer in fail(1)] == [True]
    assert locked_out(fail(1)[0])
    clock.shift(datetime.timedelta(minutes=59))
    assert "60 minutes" in log_in(PASSWORD)[1].content.decode()


def test_behind_a_proxy_each_visitor_is_counted_by_their_own_address(organizer, settings):
    settings.TRUSTED_PROXIES = 1
    proxy = "10.0.0.2"

    fail(5, proxy, x_forwarded_for=HOME)

    assert locked_out(log_in(PASSWORD, proxy, x_forwarded_for=HOME)[1])
    assert logged_in(*log_in(PASSWORD, proxy, x_forwarded_for=f"{HOME}, {OFFICE}"))


def test_an_address_that_is_not_one_counts_as_the_connection(settings):
    settings.TRUSTED_PROXIES = 2  # one too many: the first entry is what the client wrote
    request = RequestFactory().get("/admin/login/", REMOTE_ADDR="10.0.0.2", headers={"x-forwarded-for": "whatever, 10.0.0.1"})
    assert login_client_ip(request) == "10.0.0.2"
    request = RequestFactory().get("/admin/login/", REMOTE_ADDR="10.0.0.2", headers={"x-forwarded-for": f"{HOME}, 10.0.0.1"})
    assert login_client_ip(request) == HOME
