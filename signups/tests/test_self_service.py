"""Confirmation links, the learner's own page, unsubscribe and erasure: every path, twice."""

import datetime
import json
import re

import pytest
from django.core import mail, signing
from django.test import Client

from scheduler.models import EmailKind
from scheduler.planning import deliveries_dispatch
from signups.models import Enrollment, Erasure, Learner, Suppression, email_digest
from signups.selectors import enrollments_mailable
from signups.services import learner_links
from signups.tokens import confirmation_token, learner_token
from signups.tests.factories import EnrollmentFactory

pytestmark = pytest.mark.django_db


def signup(client, cohort, email="grace@example.org"):
    client.post(
        "/signup/",
        {"email": email, "first_name": "Grace", "timezone": "America/New_York", "experience": "none",
         "wants_group": "yes", "cohort": cohort.slug, "consent": "on"},
    )
    link = re.search(r"https?://\S+/confirm/\S+/", mail.outbox[-1].body).group(0)
    return link.removeprefix("http://testserver")


def manage_path(learner) -> str:
    return learner_links(learner)["manage"].removeprefix("http://testserver")


# --- Confirmation ------------------------------------------------------------------------------


def welcome_planned(cohort, now) -> bool:
    """Whether the scheduler's next pass would put a welcome email for `cohort` in the ledger."""
    planned = deliveries_dispatch(now, dry_run=True).planned
    return any(slug == cohort.slug and kind == EmailKind.WELCOME for slug, kind, _, _ in planned)


def test_opening_the_link_only_asks_and_the_button_confirms(client, next_cohort, clock):
    link = signup(client, next_cohort)

    # What a mail scanner does: fetch the link, without cookies, before its reader sees it.
    scanned = Client().get(link)
    assert Client().head(link).status_code == 200
    assert scanned.status_code == 200
    page = scanned.content.decode()
    assert '<form method="post">' in page and ">Confirm</button>" in page
    assert "grace@example.org" in page and next_cohort.name in page
    assert "/me/" not in page  # the learner's own page is for after confirming
    learner = Learner.objects.get()
    assert not learner.is_confirmed and learner.enrollments.get().status == "pending"
    assert not welcome_planned(next_cohort, clock.now())

    confirmed = client.post(link)

    assert "You are in!" in confirmed.content.decode()
    learner.refresh_from_db()
    assert learner.is_confirmed and learner.enrollments.get().status == "active"
    assert welcome_planned(next_cohort, clock.now())


def test_confirming_twice_says_already_done(client, next_cohort):
    link = signup(client, next_cohort)

    first = client.post(link)
    second = client.post(link)
    opened_again = client.get(link)

    assert "You are in!" in first.content.decode()
    assert "Already confirmed" in second.content.decode()
    assert "Already confirmed" in opened_again.content.decode()
    learner = Learner.objects.get()
    assert learner.is_confirmed
    assert learner.enrollments.get().status == "active"
    assert list(enrollments_mailable(next_cohort)) == [learner.enrollments.get()]


def test_only_confirmed_learners_are_mailable(client, next_cohort):
    signup(client, next_cohort)
    assert not enrollments_mailable(next_cohort).exists()


@pytest.mark.parametrize("method", ["get", "post"])
def test_an_altered_link_says_so_and_offers_a_fresh_one(client, next_cohort, method):
    link = signup(client, next_cohort)
    tampered = link[:-3] + ("A" if link[-3] != "A" else "B") + link[-2:]

    for path in [tampered, "/confirm/garbage/", "/confirm/" + signing.dumps({"enrollment": 1}, salt="other") + "/"]:
        response = getattr(client, method)(path)
        assert response.status_code == 400
        assert "This link does not work" in response.content.decode()
        assert 'action="/confirm/resend/"' in response.content.decode()
    assert not Learner.objects.get().is_confirmed


@pytest.mark.parametrize("method", ["get", "post"])
def test_an_expired_link_says_so_and_a_fresh_one_can_be_had(client, next_cohort, clock, method):
    link = signup(client, next_cohort)

    clock.shift(datetime.timedelta(days=8))
    response = getattr(client, method)(link)
    assert response.status_code == 400
    page = response.content.decode()
    assert "This link has expired" in page
    assert 'value="grace@example.org"' in page
    assert client.post("/confirm/resend/", {"email": "grace@example.org"}).status_code == 302

    assert not Learner.objects.get().is_confirmed
    fresh = re.search(r"https?://\S+/confirm/\S+/", mail.outbox[-1].body).group(0)
    assert fresh != "http://testserver" + link
    assert len(mail.outbox) == 2
    assert "Confirm your address" in client.get(fresh).content.decode()
    assert "You are in!" in client.post(fresh).content.decode()


def test_asking_for_a_fresh_link_for_an_unknown_address_says_the_same(client):
    response = client.post("/confirm/resend/", {"email": "nobody@example.org"})
    assert response.status_code == 302 and response["Location"] == "/signup/sent/"
    assert not mail.outbox


@pytest.mark.parametrize("status", [Enrollment.Status.LEFT, Enrollment.Status.SWITCHED])
def test_a_link_for_an_enrollment_that_moved_on_no_longer_works(client, next_cohort, status):
    enrollment = EnrollmentFactory(cohort=next_cohort, status=status)
    path = f"/confirm/{confirmation_token(enrollment.pk)}/"
    assert client.get(path).status_code == 400
    assert client.post(path).status_code == 400
    enrollment.refresh_from_db()
    assert enrollment.status == status


# --- The learner's own page ----------------------------------------------------------------------


def test_the_page_shows_round_week_and_status(client, running_cohort):
    enrollment = EnrollmentFactory(cohort=running_cohort)

    page = client.get(manage_path(enrollment.learner)).content.decode()

    assert running_cohort.name in page
    assert "Week 3 of 8" in page
    assert "Active" in page


def test_dropping_back_to_the_next_round(client, running_cohort, next_cohort, later_cohort):
    enrollment = EnrollmentFactory(cohort=running_cohort)
    path = manage_path(enrollment.learner)
    assert next_cohort.name in client.get(path).content.decode()

    response = client.post(path + "switch/", {"cohort": next_cohort.slug}, follow=True)

    assert f"you are now in {next_cohort.name}" in response.content.decode()
    enrollment.refresh_from_db()
    assert enrollment.status == "switched" and enrollment.ended_at is not None
    new = Enrollment.objects.get(status="active")
    assert new.cohort == next_cohort and new.learner == enrollment.learner

    # Not back to an earlier round, nor to one that is closed.
    again = client.post(path + "switch/", {"cohort": running_cohort.slug}, follow=True)
    assert "not open for signup" in again.content.decode()
    assert Enrollment.objects.get(status="active").cohort == next_cohort


def test_pause_resume_and_leave_are_idempotent(client, next_cohort):
    enrollment = EnrollmentFactory(cohort=next_cohort)
    path = manage_path(enrollment.learner)

    assert "Your weekly emails are paused." in client.post(path + "pause/", follow=True).content.decode()
    assert "Your emails were already paused." in client.post(path + "pause/", follow=True).content.decode()
    assert not enrollments_mailable(next_cohort).exists()
    assert "will start again" in client.post(path + "resume/", follow=True).content.decode()
    assert enrollments_mailable(next_cohort).exists()
    assert "You have left the course" in client.post(path + "leave/", follow=True).content.decode()
    assert "You have left the course" in client.get(path).content.decode()
    assert "You have no current enrollment" in client.post(path + "leave/", follow=True).content.decode()
    assert not enrollments_mailable(next_cohort).exists()


def test_unknown_actions_are_not_found(client, next_cohort):
    enrollment = EnrollmentFactory(cohort=next_cohort)
    assert client.post(manage_path(enrollment.learner) + "delete-everything/").status_code == 404


def test_my_data_downloads_as_json(client, next_cohort):
    enrollment = EnrollmentFactory(cohort=next_cohort, learner__email="ada@example.org", learner__first_name="Ada")

    response = client.get(manage_path(enrollment.learner) + "export/")

    assert response["Content-Disposition"].startswith("attachment")
    data = json.loads(response.content)
    assert data["email"] == "ada@example.org" and data["first_name"] == "Ada"
    assert (data["unsubscribed_at"], data["unsubscribed_reason"]) == (None, None)
    assert data["enrollments"][0]["cohort"] == next_cohort.name


def test_a_forged_manage_link_gets_a_page_not_a_crash(client, next_cohort):
    enrollment = EnrollmentFactory(cohort=next_cohort)
    token = learner_token(enrollment.learner.public_id)
    for path in [f"/me/{token}x/", "/me/not-a-token/", f"/me/{token[:-1]}/export/", f"/unsubscribe/{token}x/"]:
        response = client.get(path)
        assert response.status_code == 400, path
        assert "This link does not work" in response.content.decode()


def test_a_fresh_manage_link_can_be_had_by_email(client, next_cohort):
    EnrollmentFactory(cohort=next_cohort, learner__email="ada@example.org")
    client.post("/me/resend/", {"email": "ADA@example.org"})
    client.post("/me/resend/", {"email": "nobody@example.org"})

    [message] = mail.outbox
    assert message.to == ["ada@example.org"] and "/me/" in message.body


# --- Erasure -----------------------------------------------------------------------------------


def test_deleting_my_data_leaves_only_an_anonymous_count(client, next_cohort):
    enrollment = EnrollmentFactory(cohort=next_cohort, learner__email="erase.me@example.org")
    path = manage_path(enrollment.learner)

    assert "Delete your data?" in client.get(path + "erase/").content.decode()
    assert Learner.objects.exists()  # looking is not deleting
    response = client.post(path + "erase/")

    assert "Your data is deleted" in response.content.decode()
    assert not Learner.objects.exists() and not Enrollment.objects.exists()
    assert Erasure.objects.get().cohort == next_cohort
    assert Suppression.objects.get().email_digest == email_digest("erase.me@example.org")
    assert client.get(path).status_code == 400  # the link died with the data


def test_an_erased_address_must_confirm_anew(client, next_cohort):
    enrollment = EnrollmentFactory(cohort=next_cohort, learner__email="back@example.org")
    client.post(manage_path(enrollment.learner) + "erase/")

    link = signup(client, next_cohort, email="back@example.org")
    assert not enrollments_mailable(next_cohort).exists()
    assert Suppression.objects.exists()

    client.post(link)
    assert enrollments_mailable(next_cohort).count() == 1
    assert not Suppression.objects.exists()


SECRET_LINK_PAGES = {
    "manage": lambda client, learner, confirm: client.get(manage_path(learner)),
    "manage action": lambda client, learner, confirm: client.post(manage_path(learner) + "pause/"),
    "export": lambda client, learner, confirm: client.get(manage_path(learner) + "export/"),
    "erase form": lambda client, learner, confirm: client.get(manage_path(learner) + "erase/"),
    "erase": lambda client, learner, confirm: client.post(manage_path(learner) + "erase/"),
    "manage, a bad link": lambda client, learner, confirm: client.get("/me/garbage/"),
    "confirm page": lambda client, learner, confirm: client.get(confirm),
    "confirm": lambda client, learner, confirm: client.post(confirm),
    "unsubscribe page": lambda client, learner, confirm: client.get(learner_links(learner)["unsubscribe"]),
    "unsubscribe": lambda client, learner, confirm: client.post(learner_links(learner)["unsubscribe"]),
}


@pytest.mark.parametrize("page", SECRET_LINK_PAGES)
def test_pages_behind_a_learners_secret_link_are_never_stored(client, next_cohort, page):
    enrollment = EnrollmentFactory(cohort=next_cohort, status=Enrollment.Status.PENDING, learner__confirmed_at=None)
    confirm = f"/confirm/{confirmation_token(enrollment.pk)}/"

    response = SECRET_LINK_PAGES[page](client, enrollment.learner, confirm)

    assert response.status_code in (200, 302, 400)
    assert "no-store" in response["Cache-Control"].split(", ")


# --- Unsubscribe -------------------------------------------------------------------------------


def test_unsubscribe_page_has_one_button_and_the_post_unsubscribes(client, next_cohort):
    enrollment = EnrollmentFactory(cohort=next_cohort)
    path = learner_links(enrollment.learner)["unsubscribe"].removeprefix("http://testserver")

    page = client.get(path).content.decode()
    assert page.count("<button") == 1
    assert Learner.objects.get().unsubscribed_at is None

    assert "You are unsubscribed" in client.post(path).content.decode()
    assert "Already unsubscribed" in client.post(path).content.decode()
    assert not enrollments_mailable(next_cohort).exists()
    assert Suppression.objects.get().reason == "unsubscribed"


def test_one_click_unsubscribe_works_without_a_csrf_token_or_a_login(next_cohort):
    enrollment = EnrollmentFactory(cohort=next_cohort)
    mail_client = Client(enforce_csrf_checks=True)

    response = mail_client.post(
        learner_links(enrollment.learner)["unsubscribe"].removeprefix("http://testserver"),
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 200
    assert Learner.objects.get().is_unsubscribed


def test_an_unsubscribed_address_is_mailed_again_only_after_it_confirms(client, next_cohort, clock):
    link = signup(client, next_cohort)
    client.post(link)
    learner = Learner.objects.get()
    client.post(learner_links(learner)["unsubscribe"].removeprefix("http://testserver"))

    clock.shift(datetime.timedelta(minutes=11))
    relink = signup(client, next_cohort)
    assert not enrollments_mailable(next_cohort).exists()

    client.post(relink)
    assert enrollments_mailable(next_cohort).count() == 1
    assert not Learner.objects.get().is_unsubscribed


def test_links_in_emails_sent_before_a_key_rotation_still_work(client, next_cohort, settings):
    learner = EnrollmentFactory(cohort=next_cohort).learner
    old_link = learner_links(learner)["unsubscribe"].removeprefix("http://testserver")
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-that-is-long-enough-for-production-use-1234"

    response = client.post(old_link)

    assert response.status_code == 200
    learner.refresh_from_db()
    assert learner.is_unsubscribed
