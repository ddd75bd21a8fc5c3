"""Imports as background jobs: upload, a worker's preview, Apply, a worker's apply in batches, resume."""

import pytest
from django.contrib.auth.models import Permission, User
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from signups import import_jobs
from signups.imports import ImportFileError, import_file_decode, learners_import
from signups.models import Enrollment, Learner, LearnerImport
from signups.tests.factories import EnrollmentFactory, LearnerFactory

pytestmark = pytest.mark.django_db

IMPORT = "admin:signups_learner_import"


def rows(count: int, start: int = 0, extra: str = "") -> bytes:
    return ("email,first_name,timezone,experience,wants_group\n" + "".join(
        f"l{n}@example.org,L{n},Europe/Lisbon,some,yes\n" for n in range(start, start + count)
    ) + extra).encode()


def staff(*permissions: str, username: str = "organizer") -> Client:
    user = User.objects.create_user(username, f"{username}@staff.example", "a-long-test-password", is_staff=True)
    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def organizer():
    return staff("signups.import_learners", "signups.view_learner")


def upload(client, cohort, data: bytes, name="learners.csv", capture=None, **extra):
    """Post the import form; with `capture` (django_capture_on_commit_callbacks), queue after commit as in production."""
    form = {"cohort": cohort.pk, "csv_file": SimpleUploadedFile(name, data, content_type="text/csv"), **extra}
    if capture is None:
        return client.post(reverse(IMPORT), form)
    with capture(execute=True):
        return client.post(reverse(IMPORT), form)


def page(client, job):
    return client.get(reverse("admin:signups_learner_import_job", args=[job.pk]))


def apply(client, job, capture):
    with capture(execute=True):
        return client.post(reverse("admin:signups_learner_import_apply", args=[job.pk]))


def test_upload_preview_apply(organizer, next_cohort, worker, settings, django_capture_on_commit_callbacks, clock):
    settings.LEARNER_IMPORT_BATCH_SIZE = 40
    EnrollmentFactory(cohort=next_cohort, learner__email="l3@example.org", learner__first_name="Old")
    data = rows(100, extra="not-an-email,X,UTC,none,yes\n")

    uploaded = upload(organizer, next_cohort, data, capture=django_capture_on_commit_callbacks)

    job = LearnerImport.objects.get()
    assert uploaded.status_code == 302 and uploaded.url == reverse("admin:signups_learner_import_job", args=[job.pk])
    assert (job.status, job.file_name, job.file_size, bytes(job.content)) == ("queued", "learners.csv", len(data), data)
    assert worker.queued == [("learner_import_preview", job.pk)]
    queued_page = page(organizer, job).content.decode()
    assert "Waiting for a worker" in queued_page and 'data-running="true"' in queued_page

    assert worker.run() == ["learner_import_preview"]
    job.refresh_from_db()
    assert (job.status, job.rows_total, job.rows_done, job.added, job.updated, job.refused) == ("previewed", 101, 101, 99, 1, 1)
    assert job.refusals == [[102, "not-an-email", "not a valid email address"]]
    assert Learner.objects.count() == 1  # the preview saved nothing
    previewed = page(organizer, job).content.decode()
    assert "Preview ready" in previewed and "Apply: import 100 learners" in previewed and 'data-running="false"' in previewed
    assert "not a valid email address" in previewed and "not-an-email" in previewed

    applied = apply(organizer, job, django_capture_on_commit_callbacks)
    assert applied.status_code == 302
    assert worker.queued == [("learner_import_apply", job.pk)]
    job.refresh_from_db()
    assert (job.status, job.rows_done, job.added, job.refused) == ("applying", 0, 0, 0)
    # A second click (or a second tab) queues nothing more.
    apply(organizer, job, django_capture_on_commit_callbacks)
    assert worker.queued == [("learner_import_apply", job.pk)]

    worker.run()
    job.refresh_from_db()
    assert (job.status, job.rows_done, job.added, job.updated, job.refused) == ("applied", 101, 99, 1, 1)
    assert bytes(job.content) == b""  # the addresses are not kept once imported
    assert Learner.objects.count() == 100
    assert Learner.objects.get(email="l3@example.org").first_name == "L3"
    assert Enrollment.objects.filter(cohort=next_cohort, status="pending").count() == 99
    assert len(mail.outbox) == 99  # the new ones' confirmation links; l3 was enrolled already
    done = page(organizer, job).content.decode()
    assert "Imported" in done and "99</strong> added" in done and 'data-running="false"' in done


def test_progress_is_written_batch_by_batch(next_cohort, settings, clock):
    settings.LEARNER_IMPORT_BATCH_SIZE = 10
    job = LearnerImport.objects.create(cohort=next_cohort, file_size=1, content=rows(25, extra="bad,X,UTC,none,yes\n"), confirmed=True)
    seen = []
    original = import_jobs._Progress.batch_done

    def batch_done(self, rows_done, outcome):
        original(self, rows_done, outcome)
        seen.append(LearnerImport.objects.values_list("status", "rows_done", "added", "refused").get(pk=job.pk))

    import_jobs._Progress.batch_done = batch_done
    try:
        import_jobs.learner_import_preview(job.pk, now=clock.now())
        import_jobs.learner_import_apply_request(job, now=clock.now())
        import_jobs.learner_import_apply(job.pk, now=clock.now())
    finally:
        import_jobs._Progress.batch_done = original

    assert seen == [
        ("previewing", 10, 10, 0), ("previewing", 20, 20, 0), ("previewing", 26, 25, 1),
        ("applying", 10, 10, 0), ("applying", 20, 20, 0), ("applying", 26, 25, 1),
    ]
    assert LearnerImport.objects.get(pk=job.pk).status == "applied"


def test_an_apply_that_crashed_mid_way_resumes_and_adds_nobody_twice(next_cohort, settings, clock, monkeypatch, worker):
    settings.LEARNER_IMPORT_BATCH_SIZE = 10
    job = LearnerImport.objects.create(cohort=next_cohort, file_size=1, content=rows(35), confirmed=False)
    import_jobs.learner_import_preview(job.pk, now=clock.now())
    import_jobs.learner_import_apply_request(job, now=clock.now())

    from signups import imports

    calls = {"batches": 0}
    original = imports._batch_save

    def crash_in_the_third_batch(*args):
        calls["batches"] += 1
        if calls["batches"] == 3:
            original(*args)  # its rows are written, then the worker dies before the commit
            raise KeyboardInterrupt("the worker was killed")
        return original(*args)

    monkeypatch.setattr(imports, "_batch_save", crash_in_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        import_jobs.learner_import_apply(job.pk, now=clock.now())
    job.refresh_from_db()
    assert (job.status, job.rows_done, job.added) == ("applying", 20, 20)
    assert Learner.objects.count() == 20  # the third batch rolled back whole
    assert len(mail.outbox) == 20

    # The message is delivered again (CELERY_TASK_ACKS_LATE); meanwhile an organizer resumed it too.
    monkeypatch.setattr(imports, "_batch_save", original)
    import_jobs.learner_import_apply(job.pk, now=clock.now())
    import_jobs.learner_import_apply(job.pk, now=clock.now())

    job.refresh_from_db()
    assert (job.status, job.rows_done, job.added, job.updated, job.refused) == ("applied", 35, 35, 0, 0)
    assert Learner.objects.count() == 35
    assert Enrollment.objects.count() == 35
    assert sorted(message.to[0] for message in mail.outbox) == sorted(f"l{n}@example.org" for n in range(35))


def test_a_second_run_at_the_same_time_saves_no_batch_twice(next_cohort, settings, clock):
    """A duplicate run's claim finds the rows claimed already, and it stops."""
    settings.LEARNER_IMPORT_BATCH_SIZE = 10
    job = LearnerImport.objects.create(cohort=next_cohort, file_size=1, content=rows(30), confirmed=True)
    import_jobs.learner_import_preview(job.pk, now=clock.now())
    import_jobs.learner_import_apply_request(job, now=clock.now())
    job.refresh_from_db()
    late = import_jobs._Progress(job, LearnerImport.Status.APPLYING)
    import_jobs.learner_import_apply(job.pk, now=clock.now())

    assert late.batch_claim(0) is False  # what a run that started with the first would find
    assert learners_import(next_cohort, rows(30).decode(), confirmed=True, now=clock.now(), progress=late).stopped
    assert Learner.objects.count() == 30


def test_a_failed_apply_says_so_and_resumes_from_its_last_batch(organizer, next_cohort, settings, clock, monkeypatch, worker, django_capture_on_commit_callbacks):
    settings.LEARNER_IMPORT_BATCH_SIZE = 10
    job = LearnerImport.objects.create(cohort=next_cohort, file_size=1, content=rows(25), confirmed=True)
    import_jobs.learner_import_preview(job.pk, now=clock.now())
    import_jobs.learner_import_apply_request(job, now=clock.now())
    from signups import imports

    original = imports._batch_save
    calls = {"batches": 0}

    def fail_second(*args):
        calls["batches"] += 1
        if calls["batches"] == 2:
            raise RuntimeError("ada@example.org broke it")  # an error whose text quotes a learner
        return original(*args)

    monkeypatch.setattr(imports, "_batch_save", fail_second)
    worker.queued.clear()  # the request's own message: this test runs the apply by hand
    import_jobs.learner_import_apply(job.pk, now=clock.now())  # logged, never raised
    job.refresh_from_db()
    assert (job.status, job.rows_done) == ("failed", 10)
    shown = page(organizer, job).content.decode()
    assert "stopped it after 10 rows" in shown and "ada@example.org" not in shown and "Resume" in shown

    with django_capture_on_commit_callbacks(execute=True):
        organizer.post(reverse("admin:signups_learner_import_resume", args=[job.pk]))
    assert worker.run() == ["learner_import_apply"]
    job.refresh_from_db()
    assert (job.status, job.rows_done, job.added) == ("applied", 25, 25)
    assert Learner.objects.count() == 25


def test_a_job_without_progress_for_a_while_may_be_resumed(organizer, next_cohort, clock, worker, django_capture_on_commit_callbacks):
    import datetime

    job = LearnerImport.objects.create(cohort=next_cohort, file_size=1, content=rows(3), confirmed=True, progress_at=clock.now())
    assert "Resume" not in page(organizer, job).content.decode()
    assert not import_jobs.learner_import_resume(job, now=clock.now())

    clock.shift(datetime.timedelta(minutes=6))  # the worker that took it died, its message not yet delivered again
    assert "or its worker stopped" in page(organizer, job).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        organizer.post(reverse("admin:signups_learner_import_resume", args=[job.pk]))
    assert worker.run() == ["learner_import_preview"]
    assert LearnerImport.objects.get(pk=job.pk).status == "previewed"


# --- Permissions ------------------------------------------------------------------------------


def test_every_import_page_needs_the_import_permission(next_cohort, clock):
    job = LearnerImport.objects.create(cohort=next_cohort, file_size=1, content=rows(3), confirmed=False)
    import_jobs.learner_import_preview(job.pk, now=clock.now())
    viewer = staff("signups.view_learner", username="viewer")

    assert viewer.get(reverse(IMPORT)).status_code == 403
    assert upload(viewer, next_cohort, rows(2)).status_code == 403
    assert page(viewer, job).status_code == 403
    assert viewer.post(reverse("admin:signups_learner_import_apply", args=[job.pk])).status_code == 403
    assert viewer.post(reverse("admin:signups_learner_import_resume", args=[job.pk])).status_code == 403
    assert LearnerImport.objects.get().status == "previewed" and LearnerImport.objects.count() == 1


def test_refused_addresses_only_for_those_who_may_see_learners(next_cohort, clock):
    LearnerFactory(email="gone@example.org")
    from signups.services import learner_unsubscribe

    learner_unsubscribe(Learner.objects.get(email="gone@example.org"), now=clock.now())
    data = rows(1) + b"gone@example.org,G,UTC,none,yes\nsomeone@example,S,UTC,none,yes\n"
    job = LearnerImport.objects.create(cohort=next_cohort, file_size=1, content=data, confirmed=False)
    import_jobs.learner_import_preview(job.pk, now=clock.now())

    importer = staff("signups.import_learners", username="importer")
    hidden = page(importer, job).content.decode()
    assert "only its owner can sign up again" in hidden and "not a valid email address" in hidden
    assert "gone@example.org" not in hidden and "someone@example" not in hidden
    assert "Addresses are shown only to staff who may see learners" in hidden

    shown = page(staff("signups.import_learners", "signups.view_learner", username="organizer2"), job).content.decode()
    assert "someone@example" in shown and "(not kept)" in shown
    assert [email for _, email, _ in LearnerImport.objects.get().refusals] == [None, "someone@example"]
    # The address of someone who unsubscribed or erased their data is not kept at all.
    assert "gone@example.org" not in shown and "gone@example.org" not in str(LearnerImport.objects.get().refusals)


def test_the_page_of_an_import_that_does_not_exist_is_404(organizer):
    assert organizer.get(reverse("admin:signups_learner_import_job", args=[999])).status_code == 404
    assert organizer.get(reverse("admin:signups_learner_import_apply", args=[999])).status_code == 405


# --- Files refused whole, at upload -----------------------------------------------------------


@pytest.mark.parametrize(
    "data, message",
    [
        ("email,timezone,experience\nada@example.org,Europe/Zürich,some\n".encode("latin-1"), "The file is not UTF-8 text (byte 51 is not). Save it as “CSV UTF-8” and try again."),
        ("email,timezone,experience\nada@example.org,UTC,some\n".encode("utf-16"), "The file is not UTF-8 text (byte 1 is not)"),
        (b"", "The submitted file is empty."),
        (b"\xef\xbb\xbf \n\n", "The file is empty."),
        (b"email,timezone,experience\n", "The file has a header row but no learners."),
        (b"email;timezone;experience\na;b;c\n", "missing: email, experience, timezone."),
    ],
    ids=["latin-1", "utf-16", "no bytes", "only blank", "header only", "not our columns"],
)
def test_a_file_that_cannot_be_read_is_refused_at_once_and_nothing_is_stored(organizer, next_cohort, data, message):
    response = upload(organizer, next_cohort, data)

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not LearnerImport.objects.exists()


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(organizer, next_cohort, settings):
    settings.LEARNER_IMPORT_MAX_BYTES = 1000
    response = upload(organizer, next_cohort, rows(40))

    assert len(rows(40)) == 1749
    assert "The file is 1,749 bytes; the largest accepted is 1,000 bytes. Split it in parts." in response.content.decode()
    assert not LearnerImport.objects.exists()
    with pytest.raises(ImportFileError, match="largest accepted is 1,000 bytes"):
        import_file_decode(rows(40))


def test_a_nul_byte_is_refused_for_its_row_and_stored_safely(organizer, next_cohort, worker, clock, django_capture_on_commit_callbacks):
    data = rows(2) + b"nul@exam\x00ple.org,N,UTC,none,yes\nbell@example.org,B\x07,UTC,none,yes\n" + rows(1, start=9)[len(rows(0)):]
    upload(organizer, next_cohort, data, capture=django_capture_on_commit_callbacks)
    worker.run()

    job = LearnerImport.objects.get()
    assert (job.status, job.added, job.refused) == ("previewed", 3, 2)
    assert job.refusals == [
        [4, "nul@exam\\x00ple.org", "the email column contains a NUL byte (U+0000): remove it"],
        [5, "bell@example.org", "the first_name column contains a control character (U+0007): remove it"],
    ]
    assert "nul@exam\\x00ple.org" in page(organizer, job).content.decode()
