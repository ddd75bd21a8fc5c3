"""Signing up on the website: the form, double opt-in, one learner per address, bad input, abuse."""

import datetime
import re
import socket

import pytest
from django.core import mail
from django.test import Client

from signups.models import Enrollment, Learner

pytestmark = pytest.mark.django_db


def form_data(**changes):
    data = {
        "email": "Ada.Lovelace@Example.org",
        "first_name": "Ada",
        "timezone": "Europe/London",
        "experience": "some",
        "wants_group": "yes",
        "consent": "on",
    }
    return {key: value for key, value in (data | changes).items() if value is not None}


def confirm_link(message) -> str:
    return re.search(r"https?://\S+/confirm/\S+/", message.body).group(0)


def test_the_home_page_has_the_form_with_its_public_field_names(client, next_cohort, later_cohort):
    page = client.get("/").content.decode()

    for name in ["email", "first_name", "timezone", "experience", "wants_group", "cohort", "consent"]:
        assert f'name="{name}"' in page, name
    assert 'action="/signup/#signup"' in page  # the fragment brings the learner back to the form and its errors
    # The next round to start is chosen already; each round shows its start date.
    assert re.search(rf'value="{next_cohort.slug}"[^>]*checked', page)
    assert f"{later_cohort.start_date:%A %-d %B %Y}" in page
    assert '<option value="America/Chicago">' in page  # the list of time zones for people without JavaScript


def test_a_signup_creates_an_unconfirmed_enrollment_and_mails_a_confirmation_link(client, next_cohort):
    response = client.post("/signup/", form_data(cohort=next_cohort.slug))

    assert response.status_code == 302 and response["Location"] == "/signup/sent/"
    learner = Learner.objects.get()
    assert learner.email == "ada.lovelace@example.org"
    assert not learner.is_confirmed
    enrollment = learner.enrollments.get()
    assert (enrollment.status, enrollment.cohort, enrollment.wants_group) == ("pending", next_cohort, True)
    [message] = mail.outbox
    assert message.to == ["ada.lovelace@example.org"]
    assert "Confirm" in message.subject
    assert confirm_link(message).startswith("http://testserver/confirm/")
    assert "Check your inbox" in client.get(response["Location"]).content.decode()


def test_without_a_choice_the_next_round_to_start_is_taken(client, next_cohort, later_cohort):
    client.post("/signup/", form_data())
    assert Enrollment.objects.get().cohort == next_cohort


def test_one_person_is_one_learner_however_often_they_sign_up(client, next_cohort, later_cohort):
    client.post("/signup/", form_data(cohort=next_cohort.slug))
    client.post("/signup/", form_data(email="  ADA.lovelace@example.ORG ", cohort=later_cohort.slug))

    assert Learner.objects.count() == 1
    enrollment = Enrollment.objects.get()
    assert enrollment.cohort == later_cohort  # still unconfirmed: the latest answers count
    assert len(mail.outbox) == 1  # not re-sent within 10 minutes


def test_signing_up_again_after_ten_minutes_re_sends_the_confirmation(client, next_cohort, clock):
    client.post("/signup/", form_data())
    clock.shift(datetime.timedelta(minutes=11))
    client.post("/signup/", form_data())

    assert len(mail.outbox) == 2
    assert Learner.objects.count() == 1
    assert client.post(confirm_link(mail.outbox[1])).status_code == 200
    assert Learner.objects.get().is_confirmed


def test_known_and_unknown_addresses_get_the_same_answer(client, next_cohort, clock):
    client.post("/signup/", form_data(email="known@example.org"))
    Learner.objects.update(confirmed_at=clock.now())
    Enrollment.objects.update(status="active")

    known = client.post("/signup/", form_data(email="known@example.org"), follow=True)
    unknown = client.post("/signup/", form_data(email="new@example.org"), follow=True)

    assert known.redirect_chain == unknown.redirect_chain
    assert known.content == unknown.content


def test_a_confirmed_learner_signing_up_again_changes_nothing_and_gets_a_manage_link(client, next_cohort, later_cohort, clock):
    client.post("/signup/", form_data(cohort=next_cohort.slug))
    client.post(confirm_link(mail.outbox[0]))
    clock.shift(datetime.timedelta(minutes=11))
    client.post("/signup/", form_data(first_name="Mallory", cohort=later_cohort.slug))

    learner = Learner.objects.get()
    assert learner.first_name == "Ada"
    assert learner.enrollments.get().cohort == next_cohort
    notice = mail.outbox[1]
    assert "already signed up" in notice.subject
    assert "/me/" in notice.body
    assert notice.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.parametrize(
    "changes, field, message",
    [
        ({"email": "not-an-address"}, "email", "Enter a valid email address."),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone", "is not a time zone we know"),
        ({"experience": "guru"}, "experience", "Select a valid choice."),
        ({"cohort": "no-such-round"}, "cohort", "There is no such round."),
        ({"consent": None}, "consent", "Please agree to receive the course emails"),
        ({"wants_group": "maybe"}, "wants_group", "Select a valid choice."),
    ],
)
def test_bad_input_comes_back_with_the_input_kept_and_a_message_at_the_field(client, next_cohort, changes, field, message):
    response = client.post("/signup/", form_data(**({"cohort": next_cohort.slug} | changes)))

    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors[field])
    page = response.content.decode()
    assert 'value="Ada"' in page  # what the person typed is still there
    assert not Learner.objects.exists() and not mail.outbox
    # The summary at the form (focused by static/js/form_errors.js) links to the field.
    target = f"id_{field}_0" if field in {"experience", "cohort", "wants_group"} else f"id_{field}"
    assert 'id="signup-errors" role="alert" tabindex="-1"' in page
    assert f'<li><a href="#{target}">' in page and f'id="{target}"' in page


def test_a_round_that_closed_since_the_page_loaded_is_refused_at_the_field(client, next_cohort, running_cohort):
    response = client.post("/signup/", form_data(cohort=running_cohort.slug))

    assert response.status_code == 400
    assert response.context["form"].errors["cohort"] == ["This round is full or no longer open for signup. Please choose another one."]
    assert not Learner.objects.exists()


def test_with_no_round_open_the_signup_joins_the_waitlist(client, running_cohort):
    page = client.get("/").content.decode()
    assert "you will be on the waitlist" in page

    response = client.post("/signup/", form_data())

    assert response["Location"] == "/signup/sent/?waitlist=1"
    enrollment = Enrollment.objects.get()
    assert enrollment.cohort is None and enrollment.course == running_cohort.course
    assert "waitlist" in mail.outbox[0].body


def test_the_honeypot_catches_bots_quietly(client, next_cohort):
    response = client.post("/signup/", form_data(website="http://spam.example"))

    assert response.status_code == 302
    assert not Learner.objects.exists() and not mail.outbox


def test_another_site_can_post_the_form_without_a_csrf_token(next_cohort):
    partner_site = Client(enforce_csrf_checks=True)
    response = partner_site.post("/signup/", form_data(cohort=next_cohort.slug))

    assert response.status_code == 302
    assert Learner.objects.count() == 1


def test_too_many_signups_from_one_address_are_refused(client, next_cohort, settings):
    settings.SIGNUP_LIMIT_PER_IP_PER_HOUR = 3
    for number in range(3):
        assert client.post("/signup/", form_data(email=f"person{number}@example.org")).status_code == 302

    response = client.post("/signup/", form_data(email="person4@example.org"))

    assert response.status_code == 429
    assert Learner.objects.count() == 3
    # Another visitor is not affected.
    assert client.post("/signup/", form_data(email="other@example.org"), REMOTE_ADDR="10.0.0.9").status_code == 302


def test_the_same_address_cannot_be_mail_bombed(client, next_cohort, settings, clock):
    settings.SIGNUP_LIMIT_PER_ADDRESS_PER_HOUR = 2
    for visit in range(4):  # every 11 minutes: past the re-send pause, within the hour
        response = client.post("/signup/", form_data(), REMOTE_ADDR=f"10.0.1.{visit}")
        assert response.status_code == 302  # the same answer: nothing given away
        clock.shift(datetime.timedelta(minutes=11))

    assert len(mail.outbox) == 2


def test_behind_a_proxy_the_forwarded_address_counts(client, next_cohort, settings):
    settings.TRUSTED_PROXIES = 1
    settings.SIGNUP_LIMIT_PER_IP_PER_HOUR = 1
    client.post("/signup/", form_data(email="a@example.org"), HTTP_X_FORWARDED_FOR="203.0.113.5")

    assert client.post("/signup/", form_data(email="b@example.org"), HTTP_X_FORWARDED_FOR="203.0.113.6").status_code == 302
    assert client.post("/signup/", form_data(email="c@example.org"), HTTP_X_FORWARDED_FOR="203.0.113.5").status_code == 429


def test_a_get_to_the_signup_address_goes_to_the_form(client):
    response = client.get("/signup/")
    assert response.status_code == 302 and response["Location"] == "/#join"


def test_a_signup_costs_a_fixed_number_of_queries(client, next_cohort, later_cohort, django_assert_num_queries, monkeypatch):
    from signups import emails

    # open cohort + course, the course's open cohorts; learner get-or-create (with savepoints),
    # its enrollment: read; the cohort's lock (its seats), insert; the learner's update; the
    # confirmation in the outbox: an older one still waiting deleted, this one inserted. The
    # email itself is the worker's, after the response: held back here.
    monkeypatch.setattr(emails, "learner_email_enqueue", lambda email_id: None)
    with django_assert_num_queries(15):
        client.post("/signup/", form_data(cohort=next_cohort.slug))


def test_no_template_comment_leaks_onto_the_page(client, next_cohort):
    page = client.get("/").content.decode()
    assert "{#" not in page and "#}" not in page and "{%" not in page


def test_a_full_round_is_not_offered_and_cannot_be_chosen(client, next_cohort, later_cohort):
    from signups.tests.factories import EnrollmentFactory

    next_cohort.capacity = 2
    next_cohort.save()
    EnrollmentFactory.create_batch(2, cohort=next_cohort)

    page = client.get("/").content.decode()
    assert f'value="{next_cohort.slug}"' not in page
    assert re.search(rf'value="{later_cohort.slug}"[^>]*checked', page)
    response = client.post("/signup/", form_data(cohort=next_cohort.slug))
    assert response.status_code == 400
    assert "This round is full" in response.context["form"].errors["cohort"][0]


@pytest.mark.parametrize("hangs", [False, True], ids=["redis down", "redis hanging"])
def test_signups_go_through_when_the_cache_is_unreachable(client, next_cohort, settings, caplog, hangs):
    """The rate limiter's cache is down (nothing listens) or hangs (accepts and never answers):
    the signup succeeds after at most the socket timeout, and the warning says why."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        if hangs:
            server.listen(16)
        settings.CACHES = {"default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": f"redis://127.0.0.1:{server.getsockname()[1]}/0",
            "OPTIONS": {"socket_connect_timeout": 0.3, "socket_timeout": 0.3},
        }}

        response = client.post("/signup/", form_data(cohort=next_cohort.slug))

    assert response.status_code == 302 and response["Location"] == "/signup/sent/"
    assert Learner.objects.get().email == "ada.lovelace@example.org" and len(mail.outbox) == 1
    assert "Signup rate limits not counted, the cache is unreachable" in caplog.text
