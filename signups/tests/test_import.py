"""Organizers import learners from CSV: in admin (preview, then import) and with a command."""

import textwrap
from io import StringIO

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.urls import reverse

from signups.imports import ImportFileError, learners_import
from signups.models import Enrollment, Learner
from signups.services import learner_unsubscribe
from signups.tests.factories import EnrollmentFactory, LearnerFactory

pytestmark = pytest.mark.django_db

CSV = textwrap.dedent(
    """\
    email,first_name,timezone,experience,wants_group
    ada@example.org,Ada,Europe/London,some,yes
    GRACE@example.org ,Grace,America/New_York,none,
    not-an-email,Bob,UTC,none,yes
    alan@example.org,Alan,Mars/Base,some,yes
    joan@example.org,Joan,Europe/Paris,guru,no
    ada@example.org,Ada again,Europe/London,some,yes
    linus@example.org,Linus,Europe/Helsinki,experienced,perhaps
    """
)


def test_rows_are_added_or_refused_with_their_row_number_and_reason(next_cohort, clock):
    report = learners_import(next_cohort, CSV, confirmed=False, now=clock.now())

    assert (report.added, report.updated) == (2, 0)
    assert report.refused == [
        (4, "not-an-email", "'not-an-email' is not a valid email address"),
        (5, "alan@example.org", "'Mars/Base' is not a time zone (use an IANA name like Europe/Lisbon)"),
        (6, "joan@example.org", "experience must be one of none, some, experienced, not 'guru'"),
        (7, "ada@example.org", "the same address is on row 2"),
        (8, "linus@example.org", "wants_group must be yes or no, not 'perhaps'"),
    ]
    assert sorted(Learner.objects.values_list("email", flat=True)) == ["ada@example.org", "grace@example.org"]
    # Not confirmed: each gets a confirmation link, and nothing else until they click it.
    assert set(Enrollment.objects.values_list("status", flat=True)) == {"pending"}
    assert sorted(message.to[0] for message in mail.outbox) == ["ada@example.org", "grace@example.org"]


def test_a_file_marked_confirmed_needs_no_confirmation(next_cohort, clock):
    report = learners_import(next_cohort, CSV, confirmed=True, now=clock.now())

    assert report.added == 2
    assert set(Enrollment.objects.values_list("status", flat=True)) == {"active"}
    assert all(learner.is_confirmed for learner in Learner.objects.all())
    assert not mail.outbox


def test_a_dry_run_reports_the_same_and_saves_nothing(next_cohort, clock):
    preview = learners_import(next_cohort, CSV, confirmed=False, now=clock.now(), dry_run=True)
    real = learners_import(next_cohort, CSV, confirmed=False, now=clock.now())

    assert (preview.added, preview.updated, preview.refused) == (real.added, real.updated, real.refused)
    assert len(mail.outbox) == 2  # only from the real run


def test_existing_learners_are_updated_and_nobody_who_left_is_put_back(next_cohort, later_cohort, clock):
    EnrollmentFactory(cohort=next_cohort, learner__email="ada@example.org", learner__first_name="A.")
    EnrollmentFactory(cohort=later_cohort, learner__email="grace@example.org")
    left = LearnerFactory(email="alan@example.org")
    EnrollmentFactory(learner=left, cohort=next_cohort, status="left")
    unsubscribed = LearnerFactory(email="joan@example.org")
    learner_unsubscribe(unsubscribed, now=clock.now())
    csv_text = "email,timezone,experience,first_name\n" + "\n".join(
        f"{email},UTC,some,{name}" for email, name in
        [("ada@example.org", "Ada"), ("grace@example.org", "Grace"), ("alan@example.org", "Alan"), ("joan@example.org", "Joan")]
    )

    report = learners_import(next_cohort, csv_text, confirmed=True, now=clock.now())

    assert (report.added, report.updated) == (0, 2)
    assert Learner.objects.get(email="ada@example.org").first_name == "Ada"
    assert report.refused == [
        (3, "grace@example.org", "already enrolled in Round 3: use the admin action 'move to cohort' instead"),
        (5, "joan@example.org", "this address unsubscribed or deleted its data: only its owner can sign up again"),
    ]
    # Alan left once: the organizer's "confirmed" does not speak for him; he must confirm himself.
    assert left.enrollments.get(status="pending").cohort == next_cohort
    assert [message.to for message in mail.outbox] == [["alan@example.org"]]


def test_a_file_without_the_required_columns_is_refused_whole(next_cohort, clock):
    with pytest.raises(ImportFileError, match="missing: experience, timezone"):
        learners_import(next_cohort, "email,first_name\na@example.org,A\n", confirmed=False, now=clock.now())


def test_the_command_prints_what_it_did(next_cohort, tmp_path):
    csv_file = tmp_path / "learners.csv"
    csv_file.write_text(CSV)
    output = StringIO()

    call_command("import_learners", next_cohort.slug, str(csv_file), "--confirmed", stdout=output)

    lines = output.getvalue().splitlines()
    assert lines[0] == "2 added, 0 updated, 5 refused."
    assert "  row 4 (not-an-email): 'not-an-email' is not a valid email address" in lines
    assert Learner.objects.count() == 2


def test_the_command_names_a_wrong_cohort_or_file(next_cohort, tmp_path):
    with pytest.raises(CommandError, match="no cohort with the slug 'nope'"):
        call_command("import_learners", "nope", str(tmp_path / "x.csv"))
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_learners", next_cohort.slug, str(tmp_path / "missing.csv"))


def test_the_admin_previews_then_imports(admin_client, next_cohort):
    url = reverse("admin:signups_learner_import")
    assert admin_client.get(url).status_code == 200

    upload = StringIO(CSV)
    upload.name = "learners.csv"
    preview = admin_client.post(url, {"cohort": next_cohort.pk, "csv_file": upload, "preview": "Preview"})

    assert preview.status_code == 200
    page = preview.content.decode()
    assert "Preview: nothing is saved yet" in page
    assert "2 to add, 0 to update, 5 refused." in page
    assert "experience must be one of none, some, experienced, not &#x27;guru&#x27;" in page
    assert not Learner.objects.exists()

    form = preview.context["form"]
    applied = admin_client.post(
        url, {"cohort": next_cohort.pk, "csv_text": form.initial["csv_text"], "apply": "Import"}, follow=True
    )

    assert "2 added, 0 updated, 5 refused." in applied.content.decode()
    assert Learner.objects.count() == 2


def test_the_admin_refuses_a_file_that_is_not_a_learners_csv(admin_client, next_cohort):
    upload = StringIO("name;age\nx;1\n")
    upload.name = "other.csv"
    response = admin_client.post(
        reverse("admin:signups_learner_import"), {"cohort": next_cohort.pk, "csv_file": upload, "preview": "Preview"}
    )
    assert "The header row must name the columns" in response.content.decode()
    assert not Learner.objects.exists()


def test_each_row_costs_a_fixed_number_of_queries(next_cohort, django_assert_num_queries, clock, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from signups import emails
    from signups.tasks import learner_email_send

    def rows(start, count):
        return "email,timezone,experience\n" + "".join(f"l{n}@example.org,UTC,none\n" for n in range(start, start + count))

    queued = []  # the workers' part is not the import's: held back, and run after the count
    monkeypatch.setattr(emails, "learner_email_enqueue", queued.append)
    with CaptureQueriesContext(connection) as ten:
        learners_import(next_cohort, rows(0, 10), confirmed=False, now=clock.now())
    with CaptureQueriesContext(connection) as thirty:
        learners_import(next_cohort, rows(100, 30), confirmed=False, now=clock.now())

    # Four queries per new learner: two inserts (learner, enrollment), and its confirmation put in
    # the outbox (a delete of any still waiting, an insert); the lookups are done once per file.
    assert len(thirty) - len(ten) == 4 * 20
    for email_id in queued:
        learner_email_send.delay(email_id)
    assert len(mail.outbox) == 40
