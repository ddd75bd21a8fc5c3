"""The waitlist moves: a round that opens invites everyone waiting for it, once, and one click joins it."""

import datetime
import logging
import re
import threading

import pytest
from django.contrib.auth.models import Group, User
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cohorts.tests.factories import CohortFactory, CourseFactory
from mooc.permissions import VIEWER
from scheduler.models import EmailKind
from scheduler.planning import deliveries_dispatch
from signups import services
from signups.models import Enrollment, Learner
from signups.selectors import cohorts_with_waitlist_to_invite, enrollments_mailable, enrollments_to_invite
from signups.services import (
    enrollment_leave, learner_erase, learner_links, learner_unsubscribe, learners_move_to_cohort, waitlist_invite,
    waitlist_join_url,
)
from signups.tasks import waitlist_invite_cohort, waitlist_invite_due
from signups.tests.factories import EnrollmentFactory
from signups.tokens import confirmation_token, learner_token, waitlist_invitation_token

pytestmark = pytest.mark.django_db


def waiting(course, status=Enrollment.Status.ACTIVE, **learner) -> Enrollment:
    """A learner on the course's waitlist (confirmed, unless `confirmed_at=None` says otherwise)."""
    return EnrollmentFactory(
        cohort=None, course=course, status=status, **{f"learner__{name}": value for name, value in learner.items()}
    )


def recipients() -> list[str]:
    return sorted(address for message in mail.outbox for address in message.to)


def welcome_planned(cohort, now) -> bool:
    """Whether the scheduler's next pass would put a welcome email for `cohort` in the ledger."""
    planned = deliveries_dispatch(now, dry_run=True).planned
    return any(slug == cohort.slug and kind == EmailKind.WELCOME for slug, kind, _, _ in planned)


def join_path(enrollment, cohort) -> str:
    return waitlist_join_url(enrollment.pk, cohort.pk).removeprefix("http://testserver")


class RefusingBackend(EmailBackend):
    """The locmem backend, except that the provider refuses the addresses in `refused`."""

    refused: set[str] = set()

    def send_messages(self, messages):
        for message in messages:
            if set(message.to) & self.refused:
                raise ConnectionError("the provider hung up")
        return super().send_messages(messages)


@pytest.fixture
def refusing(settings):
    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"
    RefusingBackend.refused = set()
    yield RefusingBackend.refused
    RefusingBackend.refused = set()


# --- Who is invited, and how often ---------------------------------------------------------------


def test_a_round_open_for_signup_invites_each_confirmed_learner_waiting_for_it(course, next_cohort, running_cohort, clock):
    invited = [
        waiting(course, email="ada@example.org"),
        waiting(course, email="grace@example.org"),
        waiting(course, status=Enrollment.Status.PAUSED, email="paused@example.org"),
    ]
    waiting(course, status=Enrollment.Status.PENDING, confirmed_at=None, email="unconfirmed@example.org")
    waiting(course, email="unsubscribed@example.org", unsubscribed_at=clock.now())
    waiting(course, status=Enrollment.Status.LEFT, email="left@example.org")
    EnrollmentFactory(cohort=running_cohort, learner__email="in-a-round@example.org")
    waiting(CourseFactory(), email="other-course@example.org")
    now = clock.now()

    assert waitlist_invite(next_cohort, now) == 3

    assert recipients() == ["ada@example.org", "grace@example.org", "paused@example.org"]
    for enrollment in invited:
        enrollment.refresh_from_db()
        assert (enrollment.invited_to, enrollment.invited_at) == (next_cohort, now)
        assert enrollment.is_waitlisted  # invited, not moved: their click moves them


def test_a_rerun_invites_nobody_again(course, next_cohort, clock):
    waiting(course)
    waiting(course)
    assert waitlist_invite(next_cohort, clock.now()) == 2

    clock.shift(datetime.timedelta(minutes=15))
    assert waitlist_invite(next_cohort, clock.now()) == 0
    assert waitlist_invite(next_cohort, clock.now()) == 0

    assert len(mail.outbox) == 2


def test_each_new_round_invites_again_and_never_back_to_an_earlier_one(course, next_cohort, later_cohort, clock):
    enrollment = waiting(course)

    assert waitlist_invite(next_cohort, clock.now()) == 1
    assert waitlist_invite(later_cohort, clock.now()) == 1
    # Two rounds open at once: the earlier one does not take the invitation back, and so on.
    assert waitlist_invite(next_cohort, clock.now()) == 0
    assert waitlist_invite(later_cohort, clock.now()) == 0

    assert [message.subject.split(" of ")[0] for message in mail.outbox] == ["Round 2", "Round 3"]
    enrollment.refresh_from_db()
    assert enrollment.invited_to == later_cohort


def test_a_round_whose_signup_is_not_open_invites_nobody(course, running_cohort, clock):
    waiting(course)
    assert waitlist_invite(running_cohort, clock.now()) == 0
    assert mail.outbox == []
    assert Enrollment.objects.get().invited_to is None


def test_a_failed_send_is_logged_released_and_tried_again_by_the_next_run(course, next_cohort, clock, refusing, caplog):
    waiting(course, email="ada@example.org")
    bounced = waiting(course, email="grace@example.org")
    refusing.add("grace@example.org")

    with caplog.at_level(logging.ERROR, logger="signups.services"):
        assert waitlist_invite(next_cohort, clock.now()) == 1

    assert recipients() == ["ada@example.org"]
    assert "Could not send the invitation" in caplog.text
    bounced.refresh_from_db()
    assert (bounced.invited_to, bounced.invited_at) == (None, None)  # released

    refusing.clear()
    clock.shift(datetime.timedelta(minutes=15))
    assert waitlist_invite(next_cohort, clock.now()) == 1
    assert recipients() == ["ada@example.org", "grace@example.org"]


def test_a_failed_send_puts_back_the_invitation_it_replaced(course, next_cohort, later_cohort, clock, refusing):
    enrollment = waiting(course, email="ada@example.org")
    first_invited_at = clock.now()
    waitlist_invite(next_cohort, first_invited_at)
    refusing.add("ada@example.org")

    clock.shift(datetime.timedelta(minutes=15))
    assert waitlist_invite(later_cohort, clock.now()) == 0

    enrollment.refresh_from_db()
    assert (enrollment.invited_to, enrollment.invited_at) == (next_cohort, first_invited_at)
    # So the earlier round still does not invite them twice, and the later one tries again.
    refusing.clear()
    assert waitlist_invite(next_cohort, clock.now()) == 0
    assert waitlist_invite(later_cohort, clock.now()) == 1


def test_a_second_claim_at_the_very_same_moment_claims_nobody(course, next_cohort, clock):
    """Two runs one after the other, with the same `now`: the claim is the guard, not the time."""
    waiting(course)
    waiting(course)
    now = clock.now()

    assert waitlist_invite(next_cohort, now) == 2
    assert waitlist_invite(next_cohort, now) == 0
    assert len(mail.outbox) == 2


def test_the_claim_refuses_what_another_run_claimed_after_this_one_read(course, next_cohort, clock, monkeypatch):
    """Where rows are not locked, a read can be stale: the conditional UPDATE then skips what the
    other run claimed in between, and only what it wrote itself is mailed."""
    taken = waiting(course, email="taken@example.org")
    waiting(course, email="ours@example.org")
    rival_moment = clock.now()
    clock.shift(datetime.timedelta(seconds=1))
    real_read = services.enrollments_to_invite

    def read_then_rival_claims(cohort):
        ids = list(real_read(cohort).values_list("pk", flat=True))
        Enrollment.objects.filter(pk=taken.pk).update(invited_to=cohort, invited_at=rival_moment)
        return Enrollment.objects.filter(pk__in=ids).select_related("learner").order_by("pk")

    monkeypatch.setattr(services, "enrollments_to_invite", read_then_rival_claims)

    assert waitlist_invite(next_cohort, clock.now()) == 1

    assert recipients() == ["ours@example.org"]
    taken.refresh_from_db()
    assert taken.invited_at == rival_moment


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_runs_at_the_same_moment_invite_each_learner_once(course, next_cohort, clock, monkeypatch):
    """Two workers on PostgreSQL, in several interleaved batches each, with the very same `now`:
    the locked claim, not the time, tells them apart."""
    monkeypatch.setattr(services, "WAITLIST_INVITE_BATCH", 7)
    for number in range(20):
        waiting(course, email=f"waiting{number}@example.org")
    now = clock.now()
    start = threading.Barrier(2)
    sent, errors = [], []

    def run():
        try:
            start.wait(timeout=10)
            sent.append(waitlist_invite(next_cohort, now))
        except Exception as error:  # noqa: BLE001 - reported below, with the thread's error
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert sum(sent) == 20
    assert recipients() == sorted(f"waiting{number}@example.org" for number in range(20))
    assert Enrollment.objects.filter(invited_to=next_cohort, invited_at=now).count() == 20


def test_inviting_a_longer_waitlist_takes_no_more_queries(course, next_cohort, clock):
    def queries_to_invite(count: int) -> int:
        cohort = CohortFactory(course=course, start_date=next_cohort.start_date)
        for _ in range(count):
            waiting(course)
        with CaptureQueriesContext(connection) as queries:
            assert waitlist_invite(cohort, clock.now()) == count
        Enrollment.objects.filter(cohort=None).update(status=Enrollment.Status.LEFT)
        return len(queries)

    assert queries_to_invite(3) == queries_to_invite(9)


def test_a_long_waitlist_is_invited_in_batches(course, next_cohort, clock, monkeypatch):
    monkeypatch.setattr(services, "WAITLIST_INVITE_BATCH", 2)
    for _ in range(5):
        waiting(course)

    assert waitlist_invite(next_cohort, clock.now()) == 5
    assert len(set(recipients())) == 5


# --- The beat job --------------------------------------------------------------------------------


@pytest.fixture
def queued(monkeypatch):
    """The cohorts the beat job queued invitations for; run them as a worker would."""
    cohort_ids: list[int] = []
    monkeypatch.setattr(waitlist_invite_cohort, "delay", cohort_ids.append)
    return cohort_ids


def test_the_beat_job_invites_each_round_that_opens_once(course, running_cohort, next_cohort, clock, queued):
    waiting(course, email="ada@example.org")
    opens_tomorrow = CohortFactory(
        course=course, name="Round 4", start_date=clock.today() + datetime.timedelta(weeks=8),
        signup_opens_on=clock.today() + datetime.timedelta(days=1),
    )
    CohortFactory(course=CourseFactory())  # open, but nobody waits for its course
    full = CohortFactory(course=course, start_date=clock.today() + datetime.timedelta(weeks=6), capacity=1)
    EnrollmentFactory(cohort=full)

    waitlist_invite_due.apply()
    assert queued == [next_cohort.pk]
    for cohort_id in queued:
        waitlist_invite_cohort.apply(args=[cohort_id])
    assert [message.subject.split(" of ")[0] for message in mail.outbox] == ["Round 2"]

    queued.clear()
    waitlist_invite_due.apply()
    assert queued == []  # nobody left to invite

    clock.move_to(datetime.datetime.combine(opens_tomorrow.signup_opens_on, datetime.time(0, 5), datetime.UTC))
    waitlist_invite_due.apply()
    assert queued == [opens_tomorrow.pk]
    waitlist_invite_cohort.apply(args=[opens_tomorrow.pk])
    assert [message.subject.split(" of ")[0] for message in mail.outbox] == ["Round 2", "Round 4"]


def test_rounds_opening_together_are_found_earliest_first(course, next_cohort, later_cohort, clock):
    waiting(course)
    assert cohorts_with_waitlist_to_invite(clock.now()) == [next_cohort, later_cohort]
    waitlist_invite(next_cohort, clock.now())
    assert cohorts_with_waitlist_to_invite(clock.now()) == [later_cohort]
    waitlist_invite(later_cohort, clock.now())
    assert cohorts_with_waitlist_to_invite(clock.now()) == []
    assert list(enrollments_to_invite(next_cohort)) == []


def test_the_queued_task_for_a_deleted_round_does_nothing(course):
    waitlist_invite_cohort.apply(args=[987654])
    assert mail.outbox == []


# --- The email and its link ------------------------------------------------------------------------


def test_the_invitation_names_the_round_and_its_link_joins_it(course, next_cohort, clock):
    enrollment = waiting(course, first_name="Ada", email="ada@example.org")
    waitlist_invite(next_cohort, clock.now())

    [message] = mail.outbox
    starts = f"{next_cohort.start_date:%A} {next_cohort.start_date.day} {next_cohort.start_date:%B %Y}"
    assert message.to == ["ada@example.org"]
    assert message.subject == "Round 2 of A Gentle Introduction to Python is open: join it with one click"
    assert "Hello Ada" in message.body and starts in message.body
    links = learner_links(enrollment.learner)
    assert message.extra_headers["List-Unsubscribe"] == f"<{links['unsubscribe']}>"
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    join_url = re.search(r"http://testserver/waitlist/\S+/join/", message.body).group(0)
    [(html, mime)] = message.alternatives
    assert mime == "text/html" and f'href="{join_url}"' in html and "Join Round 2" in html and starts in html
    assert links["manage"] in message.body and links["unsubscribe"] in html

    # What a mail scanner does: open the link, without cookies. Nothing changes.
    path = join_url.removeprefix("http://testserver")  # the email's own link, end to end
    scanned = Client().get(path)
    assert Client().head(path).status_code == 200
    assert scanned.status_code == 200 and "no-store" in scanned["Cache-Control"]
    page = scanned.content.decode()
    assert '<form method="post">' in page and ">Join Round 2</button>" in page and starts in page
    enrollment.refresh_from_db()
    assert enrollment.is_waitlisted and not welcome_planned(next_cohort, clock.now())

    browser = Client(enforce_csrf_checks=True)
    assert browser.post(path).status_code == 403  # the form is CSRF-protected
    browser.get(path)
    clicked_at = clock.now()
    joined = browser.post(path, {"csrfmiddlewaretoken": browser.cookies["csrftoken"].value})

    assert joined.status_code == 200 and "no-store" in joined["Cache-Control"]
    page = joined.content.decode()
    assert "You are in Round 2!" in page and starts in page
    assert f'href="/me/{learner_token(enrollment.learner.public_id)}/"' in page
    enrollment.refresh_from_db()
    assert enrollment.cohort == next_cohort and enrollment.status == Enrollment.Status.ACTIVE
    assert clicked_at <= enrollment.mailable_since <= clock.now()  # its welcome and weeks are due from the click
    assert list(enrollments_mailable(next_cohort)) == [enrollment]
    assert Enrollment.objects.count() == 1  # the same enrollment, now in the round
    assert welcome_planned(next_cohort, clock.now())  # the scheduler takes it from here


def test_a_round_in_its_first_week_is_one_that_started(client, course, next_cohort, clock):
    """Signup stays open through a round's first week: whoever is invited then joins a running round."""
    enrollment = waiting(course)
    clock.move_to(datetime.datetime.combine(next_cohort.start_date, datetime.time(12), datetime.UTC) + datetime.timedelta(days=2))

    waitlist_invite(next_cohort, clock.now())

    started = f"which started on {next_cohort.start_date:%A} {next_cohort.start_date.day}"
    assert started in mail.outbox[0].body
    assert "started on" in client.get(join_path(enrollment, next_cohort)).content.decode()
    assert "started on" in client.post(join_path(enrollment, next_cohort)).content.decode()


def test_joining_twice_says_you_are_in_already(client, course, next_cohort):
    enrollment = waiting(course)
    path = join_path(enrollment, next_cohort)

    first = client.post(path)
    second = client.post(path)
    opened_again = client.get(path)

    assert "You are in Round 2!" in first.content.decode()
    assert "You are already in Round 2" in second.content.decode()
    assert "You are already in Round 2" in opened_again.content.decode()
    assert Enrollment.objects.get().cohort == next_cohort


def test_a_paused_learner_joins_paused(client, course, next_cohort):
    enrollment = waiting(course, status=Enrollment.Status.PAUSED)

    page = client.post(join_path(enrollment, next_cohort)).content.decode()

    assert "Your emails are paused" in page
    enrollment.refresh_from_db()
    assert enrollment.cohort == next_cohort and enrollment.status == Enrollment.Status.PAUSED
    assert enrollment.mailable_since is None
    assert list(enrollments_mailable(next_cohort)) == []


# --- What can go wrong: always a page that says what happened, never a 500 ----------------------------


@pytest.mark.parametrize(
    "make_token",
    [
        lambda: "not-a-token",
        lambda: waitlist_invitation_token(1, 2)[:-3] + "abc",
        lambda: confirmation_token(1),
    ],
    ids=["forged", "altered", "another kind of link"],
)
def test_a_forged_link_says_it_does_not_work(client, make_token):
    token = make_token()
    for response in (client.get(f"/waitlist/{token}/join/"), client.post(f"/waitlist/{token}/join/")):
        assert response.status_code == 400
        assert "This link does not work" in response.content.decode()


def test_the_link_of_an_erased_learner_or_a_deleted_round_does_not_work(client, course, next_cohort, later_cohort, clock):
    erased = waiting(course)
    path = join_path(erased, next_cohort)
    learner_erase(erased.learner, clock.today())
    other = waiting(course)
    gone_round = join_path(other, later_cohort)
    later_cohort.delete()

    for link in (path, gone_round):
        assert client.get(link).status_code == 400
        assert client.post(link).status_code == 400
    assert Enrollment.objects.get().is_waitlisted


def test_a_full_round_says_so_and_they_stay_on_the_waitlist(client, course, next_cohort):
    next_cohort.capacity = 1
    next_cohort.save()
    first, second = waiting(course), waiting(course)
    path = join_path(second, next_cohort)
    assert ">Join Round 2</button>" in client.get(path).content.decode()  # a seat is left, for now

    client.post(join_path(first, next_cohort))  # someone else clicks first
    opened = client.get(path)
    refused = client.post(path)

    for response, status in ((opened, 200), (refused, 409)):
        page = response.content.decode()
        assert response.status_code == status and "no-store" in response["Cache-Control"]
        assert "Round 2 is full" in page and "still on the waitlist" in page and "<button" not in page
    second.refresh_from_db()
    assert second.is_waitlisted and second.status == Enrollment.Status.ACTIVE


def test_after_the_round_s_signup_closes_the_link_says_so(client, course, next_cohort, clock):
    enrollment = waiting(course)
    path = join_path(enrollment, next_cohort)
    clock.move_to(datetime.datetime.combine(next_cohort.signup_closes_on, datetime.time(12), datetime.UTC) + datetime.timedelta(days=1))

    refused = client.post(path)

    page = refused.content.decode()
    assert refused.status_code == 409
    assert "Signup for Round 2 has closed" in page and "still on the waitlist" in page
    assert "Signup for Round 2 has closed" in client.get(path).content.decode()
    enrollment.refresh_from_db()
    assert enrollment.is_waitlisted


def test_a_learner_who_left_is_told_so(client, course, next_cohort, clock):
    enrollment = waiting(course)
    enrollment_leave(enrollment, clock.now())

    refused = client.post(join_path(enrollment, next_cohort))

    assert refused.status_code == 409 and "You have left the course" in refused.content.decode()
    assert not Enrollment.objects.filter(cohort=next_cohort).exists()


def test_a_learner_who_unsubscribed_is_told_so(client, course, next_cohort, clock):
    enrollment = waiting(course)
    learner_unsubscribe(enrollment.learner, clock.now())

    refused = client.post(join_path(enrollment, next_cohort))

    assert refused.status_code == 409 and "You are unsubscribed" in refused.content.decode()
    assert "You are unsubscribed" in client.get(join_path(enrollment, next_cohort)).content.decode()
    assert not Enrollment.objects.filter(cohort=next_cohort).exists()


def test_a_learner_in_another_round_by_now_is_pointed_to_their_page(client, course, next_cohort, later_cohort, clock):
    enrollment = waiting(course)
    learners_move_to_cohort(Learner.objects.all(), later_cohort, clock.now())  # an organizer moved them

    refused = client.post(join_path(enrollment, next_cohort))

    page = refused.content.decode()
    assert refused.status_code == 409
    assert "You are in another round already" in page and "Round 3" in page
    assert f'href="/me/{learner_token(enrollment.learner.public_id)}/"' in page
    assert Enrollment.objects.get(status__in=Enrollment.CURRENT).cohort == later_cohort

    # Moved on once more (a new enrollment, in a round further on): still the round they are in.
    further = CohortFactory(course=course, name="Round 4", start_date=later_cohort.start_date + datetime.timedelta(weeks=4))
    learners_move_to_cohort(Learner.objects.all(), further, clock.now())
    page = client.post(join_path(enrollment, next_cohort)).content.decode()
    assert "You are in another round already" in page and "Round 4" in page


# --- The organizers' view: how long the waitlist is ---------------------------------------------------


def test_the_course_admin_shows_how_many_wait(admin_client, course, next_cohort, clock):
    waiting(course)
    waiting(course, status=Enrollment.Status.PAUSED)
    waiting(course, status=Enrollment.Status.PENDING, confirmed_at=None)
    waiting(course, status=Enrollment.Status.LEFT)
    EnrollmentFactory(cohort=next_cohort)
    other = CourseFactory(title="Another course")
    waiting(other)

    listing = admin_client.get(reverse("admin:cohorts_course_changelist"))

    assert listing.status_code == 200
    page = listing.content.decode()
    assert "waiting on the waitlist" in page.lower()
    assert {row.title: row.waitlist_size for row in listing.context["cl"].result_list} == {
        "A Gentle Introduction to Python": 3, "Another course": 1,
    }
    change = admin_client.get(reverse("admin:cohorts_course_change", args=[course.pk]))
    assert change.status_code == 200
    assert re.search(r"Waiting on the waitlist:</label>\s*<div class=\"readonly\">3</div>", change.content.decode())
    assert admin_client.get(reverse("admin:cohorts_course_add")).status_code == 200


def test_the_course_list_costs_the_same_queries_however_many_courses(admin_client, course):
    def queries_for_the_list() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(reverse("admin:cohorts_course_changelist")).status_code == 200
        return len(queries)

    waiting(course)
    one = queries_for_the_list()
    for _ in range(4):
        waiting(CourseFactory())
    assert queries_for_the_list() == one


def test_a_viewer_sees_the_count_and_no_learner(course):
    waiting(course)
    viewer = User.objects.create_user("viewer", "viewer@staff.example", "a long and careful passphrase", is_staff=True)
    viewer.groups.add(Group.objects.get(name=VIEWER))
    client = Client()
    client.force_login(viewer)

    listing = client.get(reverse("admin:cohorts_course_changelist"))

    assert listing.status_code == 200
    assert [row.waitlist_size for row in listing.context["cl"].result_list] == [1]
