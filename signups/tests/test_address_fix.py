"""A learner whose address failed sees why on their own page and fixes it: the same address at
their word, a new one through a link mailed to it that only a POST follows. Then an organizer
may restart their mail (signups/suppressions.py)."""

import datetime
import re

import pytest
from django.core import mail
from django.test import Client

from signups.models import Enrollment, Learner, LearnerEmail, Suppression, email_digest
from signups.selectors import enrollments_mailable
from signups.services import learner_erase, learner_links
from signups.suppressions import (
    AddressFixRefused, RestartRefused, learner_address_fix, learner_mail_restart, learner_mail_restart_problem,
    learner_mail_stop,
)
from signups.tests.factories import EnrollmentFactory

pytestmark = pytest.mark.django_db

Reason = Suppression.Reason
OLD = "zoe@old.example"
NEW = "zoe@new.example"


@pytest.fixture
def zoe(running_cohort, clock):
    """Active in a running round; her address bounced an hour ago."""
    enrollment = EnrollmentFactory(cohort=running_cohort, learner__email=OLD, learner__first_name="Zoe", learner__timezone="UTC")
    learner_mail_stop(enrollment.learner.pk, Reason.BOUNCED, clock.now() - datetime.timedelta(hours=1))
    return Learner.objects.get(pk=enrollment.learner.pk)


def manage_path(learner) -> str:
    return learner_links(learner)["manage"].removeprefix("http://testserver")


def fix(client, learner, email):
    return client.post(manage_path(learner) + "address/", {"email": email}, follow=True)


def address_link() -> str:
    """The link in the last email, which went to the new address."""
    message = mail.outbox[-1]
    return re.search(r"https?://\S+/address/\S+/", message.body).group(0).removeprefix("http://testserver")


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


# --- Services ------------------------------------------------------------------------------------


def test_the_same_address_is_marked_fixed_at_once_and_nothing_is_sent(zoe, clock):
    assert learner_mail_restart_problem(zoe) is not None

    now = clock.now()
    result = learner_address_fix(zoe.pk, " Zoe@Old.example ", now=now)

    zoe.refresh_from_db()
    assert result.same_address and zoe.address_fixed_at == now
    assert mail.outbox == [] and not LearnerEmail.objects.exists()
    assert zoe.email == OLD and zoe.is_unsubscribed  # still stopped: an organizer restarts it
    assert learner_mail_restart_problem(zoe) is None


def test_a_new_address_gets_a_link_through_the_outbox_and_nothing_else_changes(zoe, clock):
    result = learner_address_fix(zoe.pk, NEW, now=clock.now())

    assert not result.same_address
    row = LearnerEmail.objects.get()
    assert (row.template, row.to_email, row.status) == ("address_confirm", NEW, LearnerEmail.Status.SENT)
    [message] = mail.outbox
    assert message.to == [NEW]
    assert "/address/" in message.body and NEW in message.body
    # A typo may send it to a stranger: neither the learner's page nor their old address is in it.
    assert learner_links(zoe)["manage"] not in message.body + message.alternatives[0][0]
    assert OLD not in message.body + message.alternatives[0][0]
    zoe.refresh_from_db()
    assert zoe.email == OLD and zoe.address_fixed_at is None


def test_a_newer_request_replaces_a_link_still_waiting_to_go(zoe, clock, monkeypatch):
    from signups import emails

    monkeypatch.setattr(emails, "learner_email_enqueue", lambda email_id, eta=None: True)  # the broker holds them

    learner_address_fix(zoe.pk, "typo@new.exmaple", now=clock.now())
    learner_address_fix(zoe.pk, NEW, now=clock.now())

    assert list(LearnerEmail.objects.values_list("to_email", flat=True)) == [NEW]


@pytest.mark.parametrize("reason", [Reason.COMPLAINED, Reason.UNSUBSCRIBED])
def test_a_person_who_said_no_cannot_fix_an_address(zoe, clock, reason):
    learner_mail_stop(zoe.pk, reason, clock.now())

    with pytest.raises(AddressFixRefused, match="you asked us to stop"):
        learner_address_fix(zoe.pk, OLD, now=clock.now())
    with pytest.raises(AddressFixRefused):
        learner_address_fix(zoe.pk, NEW, now=clock.now())
    assert Learner.objects.get(pk=zoe.pk).address_fixed_at is None and mail.outbox == []


def test_nothing_to_fix_when_mail_is_not_stopped(running_cohort, clock):
    learner = EnrollmentFactory(cohort=running_cohort).learner

    with pytest.raises(AddressFixRefused, match="not stopped"):
        learner_address_fix(learner.pk, learner.email, now=clock.now())


def test_after_a_new_address_is_confirmed_the_organizer_restarts_mail_to_it(client, zoe, clock):
    fix(client, zoe, NEW)
    with pytest.raises(RestartRefused, match="not fixed their address"):  # the link is not followed yet
        learner_mail_restart(zoe.pk, now=clock.now())
    Client().post(address_link())

    learner_mail_restart(zoe.pk, now=clock.now())

    zoe.refresh_from_db()
    assert zoe.email == NEW and not zoe.is_unsubscribed
    assert list(enrollments_mailable(zoe.enrollments.get().cohort).values_list("learner__email", flat=True)) == [NEW]
    # The old address stays suppressed: it bounced.
    assert Suppression.objects.filter(email_digest=email_digest(OLD), reason=Reason.BOUNCED).exists()


# --- The learner's page ---------------------------------------------------------------------------


@pytest.mark.parametrize("reason", [Reason.BOUNCED, Reason.REFUSED, Reason.SOFT_BOUNCED])
def test_the_page_says_the_address_bounced_and_offers_the_fix(client, running_cohort, clock, reason):
    learner = EnrollmentFactory(cohort=running_cohort, learner__email=OLD, learner__timezone="UTC").learner
    learner_mail_stop(learner.pk, reason, clock.now())

    page = text(client.get(manage_path(learner)))

    assert f"Emails to {OLD} bounced on {clock.now():%A %-d %B %Y}: we stopped mailing you." in page
    assert "Fix your address" in page and 'name="email"' in page
    assert "You are unsubscribed" not in page


def test_the_page_says_a_complaint_stopped_mail_and_offers_no_fix(client, zoe, clock):
    learner_mail_stop(zoe.pk, Reason.COMPLAINED, clock.now())

    page = text(client.get(manage_path(zoe)))

    assert "You marked one of our emails as spam, so we stopped" in page
    assert "Fix your address" not in page and "bounced" not in page


def test_unsubscribing_after_a_bounce_says_unsubscribed_and_no_organizer_may_restart(client, zoe, clock):
    stopped_at = zoe.unsubscribed_at

    client.post(learner_links(zoe)["unsubscribe"].removeprefix("http://testserver"))

    learner = Learner.objects.get(pk=zoe.pk)
    assert (learner.unsubscribed_reason, learner.unsubscribed_at) == (Reason.UNSUBSCRIBED, stopped_at)
    assert Suppression.objects.get(email_digest=email_digest(OLD)).reason == Reason.UNSUBSCRIBED
    assert learner.enrollments.get().status == Enrollment.Status.LEFT
    page = text(client.get(manage_path(zoe)))
    assert "You are unsubscribed: we send you nothing." in page
    assert "Fix your address" not in page and "spam" not in page
    learner.address_fixed_at = clock.now()
    assert "they said no" in learner_mail_restart_problem(learner)


def test_the_same_address_on_the_page_tells_the_organizers(client, zoe, clock):
    before = clock.now()
    page = text(fix(client, zoe, OLD))

    assert "we have told the organizers that your address works again" in page
    assert f"You fixed your address on {clock.now():%A %-d %B %Y}. We've told the organizers; they will restart your emails." in page
    assert "Fix my address" not in page
    assert before <= Learner.objects.get(pk=zoe.pk).address_fixed_at <= clock.now()


def test_a_new_address_is_changed_only_by_the_button_on_the_link(client, zoe, clock):
    page = text(fix(client, zoe, NEW))
    assert f"We have sent a link to {NEW}" in page
    assert f"We sent a link to <strong>{NEW}</strong>" in page
    link = address_link()

    # What a mail scanner does: fetch the link, without cookies, before its reader sees it.
    scanned = Client().get(link)
    assert Client().head(link).status_code == 200
    assert scanned.status_code == 200
    assert '<form method="post">' in scanned.content.decode() and NEW in scanned.content.decode()
    assert "/me/" not in scanned.content.decode()
    learner = Learner.objects.get(pk=zoe.pk)
    assert (learner.email, learner.address_fixed_at) == (OLD, None)

    clock.shift(datetime.timedelta(minutes=5))
    pressed_at = clock.now()
    changed = Client().post(link)

    assert changed.status_code == 200
    assert "Your address is changed" in text(changed) and "We've told the organizers; they will restart your emails." in text(changed)
    learner.refresh_from_db()
    assert learner.email == NEW and pressed_at <= learner.address_fixed_at <= clock.now()
    assert learner.enrollments.get().status == Enrollment.Status.ACTIVE  # her place is kept
    again = Client().post(link)
    assert "Your address was changed already" in text(again)
    assert "Your address was changed already" in text(Client().get(link))
    assert "We've told the organizers" in text(client.get(manage_path(learner)))


def test_an_address_another_learner_has_is_refused_clearly(client, zoe, running_cohort):
    fix(client, zoe, NEW)
    link = address_link()
    EnrollmentFactory(cohort=running_cohort, learner__email=NEW)

    refused = Client().post(link)

    assert refused.status_code == 409
    assert f"{NEW} is already signed up with us, as another learner" in text(refused)
    assert Learner.objects.get(pk=zoe.pk).email == OLD


def test_the_new_addresss_own_suppression_goes_when_its_owner_confirms(client, zoe):
    Suppression.objects.create(email_digest=email_digest(NEW), reason=Reason.ERASED)
    fix(client, zoe, NEW)

    Client().post(address_link())

    assert not Suppression.objects.filter(email_digest=email_digest(NEW)).exists()


def test_a_complaint_after_the_request_makes_the_link_refuse(client, zoe, clock):
    fix(client, zoe, NEW)
    link = address_link()
    learner_mail_stop(zoe.pk, Reason.COMPLAINED, clock.now())

    assert Client().get(link).status_code == 400
    refused = Client().post(link)

    assert refused.status_code == 400 and "you asked us to stop" in text(refused)
    assert Learner.objects.get(pk=zoe.pk).email == OLD


def test_an_expired_link_says_so_and_changes_nothing(client, zoe, clock):
    fix(client, zoe, NEW)
    link = address_link()
    clock.shift(datetime.timedelta(days=7, minutes=1))

    for response in (Client().get(link), Client().post(link)):
        assert response.status_code == 400
        assert "This link has expired" in text(response) and "work for 7 days" in text(response)
    assert Learner.objects.get(pk=zoe.pk).email == OLD


def test_a_broken_link_or_an_erased_learner_gets_the_bad_link_page(client, zoe, clock):
    fix(client, zoe, NEW)
    link = address_link()

    for bad in (link[:-8] + "/", "/address/nonsense/", link.replace("/address/", "/address/x")):
        for response in (Client().get(bad), Client().post(bad)):
            assert response.status_code == 400, bad
            assert "This link does not work" in text(response)
    learner_erase(zoe, today=clock.today())
    assert "This link does not work" in text(Client().post(link))


def test_a_link_to_an_earlier_request_stops_working_once_the_address_changed(client, zoe, clock):
    fix(client, zoe, "first@new.example")
    first = address_link()
    fix(client, zoe, NEW)
    Client().post(address_link())

    response = Client().post(first)

    assert response.status_code == 400 and "This link does not work" in text(response)
    assert Learner.objects.get(pk=zoe.pk).email == NEW


def test_the_fix_form_refuses_what_is_not_an_address(client, zoe):
    page = text(fix(client, zoe, "not an address"))

    assert "Enter a valid email address." in page
    assert mail.outbox == [] and Learner.objects.get(pk=zoe.pk).address_fixed_at is None


def test_the_fix_form_is_rate_limited_like_signups(client, zoe, settings):
    settings.SIGNUP_LIMIT_PER_ADDRESS_PER_HOUR = 1

    fix(client, zoe, NEW)
    page = text(fix(client, zoe, NEW))

    assert "too many times in the last hour" in page
    assert len(mail.outbox) == 1


def test_the_fix_form_of_someone_who_complained_is_refused_on_the_page(client, zoe, clock):
    learner_mail_stop(zoe.pk, Reason.COMPLAINED, clock.now())

    page = text(fix(client, zoe, NEW))

    assert "you asked us to stop" in page and mail.outbox == []


def test_the_fix_form_only_takes_a_post(client, zoe):
    assert client.get(manage_path(zoe) + "address/").status_code == 405
    assert client.post("/me/forged/address/", {"email": NEW}).status_code == 400


def test_a_learner_erased_meanwhile_gets_the_bad_link_answer(zoe, clock):
    from signups.tokens import TokenInvalid

    learner_erase(zoe, today=clock.today())

    with pytest.raises(TokenInvalid):
        learner_address_fix(zoe.pk, NEW, now=clock.now())
