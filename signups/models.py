"""Learners, their enrollments in cohorts, and the addresses we must never mail.

A learner is one person, one normalized email address, however often they sign up.
An enrollment is that learner in one course: in a cohort, or on its waitlist when no
cohort was open. Only a confirmed, subscribed learner with an active enrollment in a
cohort is grouped and mailed.
"""

import functools
import hashlib
import uuid
import zoneinfo

from django.conf import settings
from django.db import models
from django.db.models import Q

from cohorts.models import Cohort, Course, StudyGroup


def email_normalize(address: str) -> str:
    """One spelling per address: whitespace trimmed, lower case (Ada@X.org == ada@x.org)."""
    return address.strip().lower()


def email_digest(address: str) -> str:
    """A one-way fingerprint of an address, to remember "never mail this" without keeping it."""
    return hashlib.sha256(email_normalize(address).encode()).hexdigest()


@functools.cache
def timezone_names() -> frozenset[str]:
    """The IANA time zone names a learner may pick (not aliases like "posixrules" or "Factory")."""
    return frozenset(name for name in zoneinfo.available_timezones() if "/" in name or name == "UTC")


class Experience(models.TextChoices):
    NONE = "none", "None: I have never programmed"
    SOME = "some", "Some: I have written a little code"
    EXPERIENCED = "experienced", "Experienced: I program already"


class Learner(models.Model):
    email = models.EmailField(max_length=254, unique=True, help_text="Stored normalized: trimmed, lower case.")
    # Links in emails name this, never the row id: it says nothing about how many learners we have.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    first_name = models.CharField(max_length=100, blank=True)
    timezone = models.CharField(max_length=64, help_text="IANA time zone name, e.g. Europe/Lisbon.")
    experience = models.CharField(max_length=20, choices=Experience.choices)
    confirmed_at = models.DateTimeField(null=True, blank=True, help_text="When the learner confirmed the address.")
    confirmation_sent_at = models.DateTimeField(null=True, blank=True)
    # Set, nothing is mailed to the learner: they unsubscribed, or their address refused our mail
    # (`unsubscribed_reason`, one of Suppression.Reason).
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_reason = models.CharField(max_length=20, blank=True)
    # The learner said, on their own page, that their address works again (or gave a new one,
    # confirmed): an organizer may then lift a bounce's suppression (signups/suppressions.py).
    address_fixed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["-created_at"], name="learner_newest_first")]  # the admin's list order
        permissions = [
            ("resend_confirmation", "Can re-send the confirmation email"),
            ("move_learner", "Can move learners to another cohort"),
            ("unsubscribe_learner", "Can unsubscribe learners"),
            ("import_learners", "Can import learners from a CSV file"),
            ("lift_suppression", "Can restart mail to a learner whose address bounced"),
        ]

    def __str__(self):
        return self.email

    def save(self, *args, **kwargs):
        self.email = email_normalize(self.email)
        super().save(*args, **kwargs)

    @property
    def is_confirmed(self) -> bool:
        return self.confirmed_at is not None

    @property
    def is_unsubscribed(self) -> bool:
        return self.unsubscribed_at is not None


class Enrollment(models.Model):
    """A learner in one course: in a cohort, or waitlisted (no cohort) until one opens."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for confirmation"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Emails paused"
        LEFT = "left", "Left the course"
        SWITCHED = "switched", "Moved to another cohort"

    # An enrollment in one of these is the learner's current one in its course.
    CURRENT = (Status.PENDING, Status.ACTIVE, Status.PAUSED)
    # A confirmed learner in one of these is a member of their group (pausing emails keeps it).
    GROUPED = (Status.ACTIVE, Status.PAUSED)

    learner = models.ForeignKey(Learner, on_delete=models.CASCADE, related_name="enrollments")
    course = models.ForeignKey(Course, on_delete=models.PROTECT, related_name="enrollments")
    cohort = models.ForeignKey(
        Cohort, on_delete=models.PROTECT, null=True, blank=True, related_name="enrollments",
        help_text="Empty: on the waitlist for the course's next cohort.",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    wants_group = models.BooleanField(default=True)
    # Kept when the enrollment ends, as history: a group's members are its current enrollments.
    group = models.ForeignKey(StudyGroup, on_delete=models.SET_NULL, null=True, blank=True, related_name="enrollments")
    grouped_at = models.DateTimeField(null=True, blank=True, help_text="When the learner got their current group.")
    # Set when re-forming moved the learner: their next weekly email tells them.
    group_moved_at = models.DateTimeField(null=True, blank=True)
    group_moved_from = models.CharField(max_length=100, blank=True)
    # Re-forming by activity offered this learner a move out of their quiet group (once per
    # enrollment: signups.groups.cohort_group_move_offers_send).
    group_move_offered_at = models.DateTimeField(null=True, blank=True)
    # When the learner last became mailable in this enrollment (confirmed, moved in, resumed):
    # a week is due for them at the later of its own moment and this one, and a week that
    # ended before it is not theirs (scheduler/planning.py).
    mailable_since = models.DateTimeField(null=True, blank=True)
    # The round the learner dropped back (or was moved) from, for the welcome's wording.
    switched_from = models.ForeignKey(Cohort, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # Waitlist: the round this waiting learner was last invited to join, and when.
    invited_to = models.ForeignKey(Cohort, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    invited_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["learner", "course"],
                condition=Q(status__in=["pending", "active", "paused"]),
                name="enrollment_one_current_per_course",
                violation_error_message="This learner already has a current enrollment in this course.",
            ),
        ]
        indexes = [
            models.Index(fields=["cohort", "status"]),
            # Dispatch asks each minute who became mailable, or was grouped, since its last pass.
            models.Index(fields=["cohort", "mailable_since"], name="enrollment_cohort_mailable"),
            models.Index(fields=["cohort", "grouped_at"], name="enrollment_cohort_grouped"),
        ]

    def __str__(self):
        where = self.cohort.name if self.cohort_id else "waitlist"
        return f"{self.learner} in {where} ({self.get_status_display()})"

    @property
    def is_current(self) -> bool:
        return self.status in self.CURRENT

    @property
    def is_waitlisted(self) -> bool:
        return self.cohort_id is None


class CheckIn(models.Model):
    """A learner's answer about one week of their round, from the links in its weekly email:
    they did it, they are behind, or they are stuck. One per learner, round and week; the
    learner may change it until the next week's email (issue 16)."""

    class Answer(models.TextChoices):
        DONE = "done", "I did this week"
        BEHIND = "behind", "I'm behind"
        STUCK = "stuck", "I'm stuck"

    learner = models.ForeignKey(Learner, on_delete=models.CASCADE, related_name="checkins")
    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="+")
    week_number = models.PositiveSmallIntegerField()
    answer = models.CharField(max_length=10, choices=Answer.choices)
    answered_at = models.DateTimeField(help_text="When the learner first answered for this week.")
    changed_at = models.DateTimeField(help_text="When the answer was last set.")
    # A stuck learner may ask us to tell their group (through group mail, where it is on).
    group_told_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["cohort", "week_number", "learner"]
        constraints = [
            models.UniqueConstraint(fields=["learner", "cohort", "week_number"], name="checkin_once_per_learner_week"),
        ]
        indexes = [models.Index(fields=["cohort", "week_number", "answer"], name="checkin_cohort_week")]

    def __str__(self):
        return f"{self.get_answer_display()}: week {self.week_number} (learner {self.learner_id})"


class Suppression(models.Model):
    """An address nobody may mail again until its owner signs up and confirms anew.

    Keyed by a digest, not the address: after an erasure we keep no personal data, yet
    still must not mail the address (an organizer's import, say) against the person's will.
    """

    class Reason(models.TextChoices):
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        ERASED = "erased", "Erased their data"
        REFUSED = "refused", "The mail provider refused the address"
        BOUNCED = "bounced", "Hard bounce"
        SOFT_BOUNCED = "soft_bounced", "Soft bounces, several in a row"
        COMPLAINED = "complained", "Marked our email as spam"

    # The address failed rather than its owner saying no: an organizer may lift these once the
    # learner has fixed their address. A complaint, an unsubscribe or an erasure never.
    LIFTABLE = (Reason.REFUSED, Reason.BOUNCED, Reason.SOFT_BOUNCED)

    email_digest = models.CharField(max_length=64, unique=True)
    reason = models.CharField(max_length=20, choices=Reason.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.get_reason_display()} ({self.email_digest[:12]}…)"


class Erasure(models.Model):
    """One learner erased their data: an anonymous count for statistics, nothing personal."""

    cohort = models.ForeignKey(Cohort, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    erased_on = models.DateField()

    def __str__(self):
        return f"Erasure on {self.erased_on}"


class LearnerEmail(models.Model):
    """One email to a learner that someone is waiting for (confirmation, manage link...): the
    outbox row a web request writes, and a worker sends (signups/emails.py has the rules).

        PENDING --claim--> SENDING --> SENT
           ^                  |-----> PENDING (any failure but a refused address: backoff)
           |                  '-----> FAILED (a refused address; out of attempts; not mailable any more)
           '-- a SENDING row whose claim is older than CLAIM_TIMEOUT (its worker died) is claimed afresh

    The context holds plain JSON values and references to rows ({"model": "signups.enrollment",
    "pk": 5}), loaded again when it is sent, so the email shows what is true then.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be sent"
        SENDING = "sending", "Being sent"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    # CASCADE: erasing a learner takes their unsent mail with it.
    learner = models.ForeignKey(Learner, on_delete=models.CASCADE, related_name="emails")
    template = models.CharField(max_length=100, help_text="templates/signups/email/<template>.txt, .html and _subject.txt")
    # Empty: the learner's own address, as it is when sent. Set only for the one email that must
    # reach another address: the link that confirms a new address the learner asked for.
    to_email = models.EmailField(max_length=254, blank=True)
    context = models.JSONField(default=dict, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Claims so far, each one a try at the provider.")
    next_attempt_at = models.DateTimeField(help_text="Not sent before this moment (the backoff after a failure).")
    # When the last task message queued for this row is due to run; empty when none could be
    # queued (the broker was unreachable). The sweeper queues again rows left pending past it.
    queued_at = models.DateTimeField(null=True, blank=True)
    claim = models.UUIDField(null=True, blank=True, editable=False)  # the holder of a SENDING row
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The sweeper's question, every minute: which unsent rows are due or stuck?
            models.Index(
                fields=["status", "next_attempt_at"], name="learneremail_unsent_due",
                condition=Q(status__in=["pending", "sending"]),
            ),
        ]
        permissions = [("retry_learneremail", "Can send a failed email to a learner again")]

    def __str__(self):
        return f"{self.template} to learner {self.learner_id} ({self.get_status_display()})"


# --- Organizers' long jobs: imports and bulk actions, run by a worker ---------------------------


class LearnerImport(models.Model):
    """An organizer's CSV file of learners for one cohort: previewed, then applied, by a worker
    (signups/import_jobs.py), batch by batch, while its admin page shows how far it got.

    The file is kept in the database, not on disk: every worker reads it wherever it runs
    (no shared folder between web and worker machines), it goes with the job's row in one
    transaction, and it is emptied once applied (it holds addresses; nothing needs it then).
    Bytes, not text: PostgreSQL's text cannot hold a NUL, and a NUL in a row is that row's
    problem to report (signups/imports.py), not a reason to lose the file.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        PREVIEWING = "previewing", "Checking every row"
        PREVIEWED = "previewed", "Preview ready"
        APPLYING = "applying", "Importing"
        APPLIED = "applied", "Imported"
        FAILED = "failed", "Stopped by an error"

    RUNNING = (Status.QUEUED, Status.PREVIEWING, Status.APPLYING)
    # Refused rows kept to show (the count of all of them is `refused`).
    REFUSALS_KEPT = 1000

    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="+")
    file_name = models.CharField(max_length=255, blank=True)
    file_size = models.PositiveIntegerField()
    content = models.BinaryField(help_text="The file as uploaded; emptied once applied.")
    confirmed = models.BooleanField(help_text="The organizer vouched that the file's new addresses opted in.")
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    # Counts of the phase under way: the preview's, then (from zero again) the import's.
    rows_total = models.PositiveIntegerField(null=True, blank=True)
    rows_done = models.PositiveIntegerField(default=0)
    added = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    refusals = models.JSONField(default=list, blank=True, help_text="[row number, email, reason] of the first refused rows.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The last sign of life of the worker (each batch): a job that shows none for a while may be resumed.
    progress_at = models.DateTimeField(null=True, blank=True)
    apply_started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        default_permissions = ()  # its pages ask for signups.import_learners

    def __str__(self):
        return f"Import of {self.file_name or 'a CSV file'} into {self.cohort}"

    @property
    def is_running(self) -> bool:
        return self.status in self.RUNNING


class LearnerBulkAction(models.Model):
    """An admin action over more learners than one request should handle, run by a worker
    (signups/bulk_actions.py) on the learners selected when it was asked for."""

    class Kind(models.TextChoices):
        MOVE = "move", "Move to another cohort"
        RESEND_CONFIRMATION = "resend_confirmation", "Re-send the confirmation email"
        UNSUBSCRIBE = "unsubscribe", "Unsubscribe"

    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Stopped by an error"

    # The permission each kind needs, to ask for it and to see it (as the admin action).
    PERMISSIONS = {
        Kind.MOVE: "signups.move_learner",
        Kind.RESEND_CONFIRMATION: "signups.resend_confirmation",
        Kind.UNSUBSCRIBE: "signups.unsubscribe_learner",
    }

    kind = models.CharField(max_length=30, choices=Kind.choices)
    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, null=True, blank=True, related_name="+", help_text="Where to move them.")
    learner_ids = models.JSONField(help_text="The learners selected, by id, in id order.")
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField()
    done = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0, help_text="Moved, sent or unsubscribed.")
    skipped = models.PositiveIntegerField(default=0)
    full = models.PositiveIntegerField(default=0, help_text="Not moved: the cohort had no seat left.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    progress_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        default_permissions = ()  # its page asks for the permission of its kind

    def __str__(self):
        return f"{self.get_kind_display()}: {self.total} learners"

    @property
    def is_running(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)
