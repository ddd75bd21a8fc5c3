"""Admin actions over more than a page of learners run as a worker's job; a page or less, at once."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission, User
from django.core import mail
from django.test import Client
from django.urls import reverse

from signups import bulk_actions
from signups.models import Enrollment, Learner, LearnerBulkAction
from signups.tests.factories import EnrollmentFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:signups_learner_changelist")


@pytest.fixture(autouse=True)
def small_limits(monkeypatch):
    """A "page" of 5 learners and batches of 4: the tests need a dozen learners, not hundreds."""
    monkeypatch.setattr(bulk_actions, "INLINE_LIMIT", 5)
    monkeypatch.setattr(bulk_actions, "BATCH_SIZE", 4)


@pytest.fixture
def pending(next_cohort):
    return [
        EnrollmentFactory(cohort=next_cohort, status="pending", learner__confirmed_at=None, learner__email=f"p{n:02}@example.org").learner
        for n in range(12)
    ]


def select_all(client, action, capture, **extra):
    """The whole list ("Select all 12"), as the admin's own JavaScript posts it."""
    data = {"action": action, "select_across": "1", "index": "0", ACTION_CHECKBOX_NAME: [Learner.objects.first().pk], **extra}
    with capture(execute=True):
        return client.post(CHANGELIST, data, follow=True)


def test_re_sending_to_the_whole_list_is_queued_and_followed_on_its_page(admin_client, pending, worker, django_capture_on_commit_callbacks):
    response = select_all(admin_client, "resend_confirmation", django_capture_on_commit_callbacks)

    job = LearnerBulkAction.objects.get()
    page_url = reverse("admin:signups_learner_bulk_action", args=[job.pk])
    assert f'Re-send the confirmation email for 12 learners is queued for a worker: <a href="{page_url}">' in response.content.decode()
    assert (job.kind, job.total, job.learner_ids) == ("resend_confirmation", 12, sorted(learner.pk for learner in pending))
    assert not mail.outbox  # nothing in the request
    assert 'data-running="true"' in admin_client.get(page_url).content.decode()

    assert worker.run() == ["learner_bulk_action_run"]

    job.refresh_from_db()
    assert (job.status, job.done, job.changed, job.skipped) == ("done", 12, 12, 0)
    assert sorted(message.to[0] for message in mail.outbox) == [f"p{n:02}@example.org" for n in range(12)]
    page = admin_client.get(page_url).content.decode()
    assert "Done" in page and "12</strong> sent" in page and 'data-running="false"' in page


def test_moving_the_whole_list_asks_where_then_queues(admin_client, pending, later_cohort, worker, django_capture_on_commit_callbacks):
    ask = select_all(admin_client, "move_to_cohort", django_capture_on_commit_callbacks)
    page = ask.content.decode()
    assert "Move them" in page and "p11@example.org" in page
    assert page.count(f'name="{ACTION_CHECKBOX_NAME}"') == 1 and 'name="select_across" value="1"' in page

    select_all(admin_client, "move_to_cohort", django_capture_on_commit_callbacks, apply="1", cohort=later_cohort.pk)
    job = LearnerBulkAction.objects.get()
    assert (job.kind, job.cohort, job.total) == ("move", later_cohort, 12)
    assert Enrollment.objects.filter(cohort=later_cohort).count() == 0

    worker.run()
    job.refresh_from_db()
    assert (job.status, job.changed, job.skipped, job.full) == ("done", 12, 0, 0)
    assert Enrollment.objects.filter(cohort=later_cohort, status="pending").count() == 12


def test_unsubscribing_a_filtered_list_takes_only_those_it_shows(admin_client, pending, running_cohort, worker, django_capture_on_commit_callbacks):
    others = [EnrollmentFactory(cohort=running_cohort).learner for _ in range(3)]
    data = {"action": "unsubscribe", "select_across": "1", "index": "0", ACTION_CHECKBOX_NAME: [pending[0].pk]}
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(CHANGELIST + "?status=pending", data)
    pending[3].delete()  # erased meanwhile: skipped

    worker.run()

    job = LearnerBulkAction.objects.get()
    assert (job.status, job.total, job.changed, job.skipped) == ("done", 12, 11, 1)
    assert Learner.objects.filter(unsubscribed_at__isnull=False).count() == 11
    assert not any(Learner.objects.get(pk=learner.pk).is_unsubscribed for learner in others)


def test_a_page_or_less_still_runs_at_once(admin_client, pending):
    selected = [learner.pk for learner in pending[:5]]
    response = admin_client.post(CHANGELIST, {"action": "resend_confirmation", ACTION_CHECKBOX_NAME: selected}, follow=True)

    assert "Queued 5 confirmation emails for sending; skipped 0" in response.content.decode()
    assert len(mail.outbox) == 5 and not LearnerBulkAction.objects.exists()


def test_a_rerun_after_a_crash_goes_on_from_the_last_batch(pending, clock, monkeypatch):
    from signups import tasks

    monkeypatch.setattr(tasks.learner_bulk_action_run, "apply_async", lambda *args, **kwargs: None)  # run by hand below
    job = bulk_actions.learner_bulk_action_start(
        "unsubscribe", Learner.objects.all(), cohort=None, user=None, now=clock.now()
    )
    from signups import services

    original, calls = services.learner_unsubscribe, []

    def killed_in_the_second_batch(learner, now):
        calls.append(learner.pk)
        if len(calls) == 6:
            raise KeyboardInterrupt("the worker was killed")
        return original(learner, now=now)

    monkeypatch.setattr(services, "learner_unsubscribe", killed_in_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        bulk_actions.learner_bulk_action_run(job.pk, now=clock.now())
    job.refresh_from_db()
    assert (job.status, job.done, job.changed) == ("running", 4, 4)

    monkeypatch.setattr(services, "learner_unsubscribe", original)
    bulk_actions.learner_bulk_action_run(job.pk, now=clock.now())

    job.refresh_from_db()
    # The second batch ran again: the learner unsubscribed before the crash counts as skipped.
    assert (job.status, job.done, job.changed, job.skipped) == ("done", 12, 11, 1)
    assert Learner.objects.filter(unsubscribed_at__isnull=False).count() == 12


def test_a_job_page_needs_the_permission_of_its_action(pending, clock):
    job = bulk_actions.learner_bulk_action_start("unsubscribe", Learner.objects.all(), cohort=None, user=None, now=clock.now())
    url = reverse("admin:signups_learner_bulk_action", args=[job.pk])

    def client_with(codename):
        username = f"{codename}-{User.objects.count()}"
        user = User.objects.create_user(username, f"{username}@staff.example", "a-long-test-password", is_staff=True)
        user.user_permissions.add(Permission.objects.get(content_type__app_label="signups", codename=codename))
        client = Client()
        client.force_login(user)
        return client

    assert client_with("unsubscribe_learner").get(url).status_code == 200
    assert client_with("move_learner").get(url).status_code == 403
    assert client_with("unsubscribe_learner").get(reverse("admin:signups_learner_bulk_action", args=[999])).status_code == 404
