from django.conf import settings
from django.db import models
from django.utils import timezone


WORKER_HEARTBEAT = "worker"


def heartbeat_name(queue: str) -> str:
    """The heartbeat of the worker serving `queue`: "worker" for the default queue (its name
    from before each queue had one), "worker-<queue>" for the others."""
    return WORKER_HEARTBEAT if queue == settings.CELERY_TASK_DEFAULT_QUEUE else f"{WORKER_HEARTBEAT}-{queue}"[:50]


class Heartbeat(models.Model):
    """The last time a periodic job reached a worker and the database.

    Beat queues the heartbeat task every minute on each worker queue and that queue's worker
    records it here (heartbeat_name), so their ages tell whether beat, the broker and every
    queue's worker are running.
    """

    name = models.SlugField(max_length=50, unique=True)
    seen_at = models.DateTimeField()

    def __str__(self):
        return f"{self.name} at {self.seen_at:%Y-%m-%d %H:%M:%S}"


class EmailKind(models.TextChoices):
    WEEK = "week", "Weekly email"
    WELCOME = "welcome", "Welcome (after confirmation)"
    GROUP_INTRO = "group_intro", "Group introduction"
    COURSE_END = "course_end", "Course end"
    # A study group member's message relayed to the others (groupmail): no template, the
    # member's own words; one ledger row per message and recipient (Delivery.relayed_message).
    GROUP_MESSAGE = "group_message", "Group message (relayed)"


# What staff write templates for: every kind but the members' own messages.
TEMPLATE_KINDS = [(value, label) for value, label in EmailKind.choices if value != EmailKind.GROUP_MESSAGE]


class EmailTemplate(models.Model):
    """One email of a course that staff write: a week's email, or welcome, group intro, course end.

    A cohort may override a course's template for itself. The words live in versions: every
    save adds one, so nothing is ever lost and any earlier version can be restored.
    """

    course = models.ForeignKey("cohorts.Course", on_delete=models.CASCADE, related_name="email_templates")
    cohort = models.ForeignKey(
        "cohorts.Cohort", on_delete=models.CASCADE, null=True, blank=True, related_name="email_templates",
        help_text="Empty: the course's template. A cohort: an override for that cohort only.",
    )
    kind = models.CharField(max_length=20, choices=TEMPLATE_KINDS, default=EmailKind.WEEK)
    week_number = models.PositiveSmallIntegerField(default=0, help_text="For weekly emails: the week (1, 2, ...). 0 otherwise.")
    current_version = models.ForeignKey(
        "EmailTemplateVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["course", "cohort", "kind", "week_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["course", "kind", "week_number"], condition=models.Q(cohort__isnull=True),
                name="email_template_unique_per_course",
                violation_error_message="This course already has this email; edit it instead.",
            ),
            models.UniqueConstraint(
                fields=["cohort", "kind", "week_number"], condition=models.Q(cohort__isnull=False),
                name="email_template_unique_per_cohort",
                violation_error_message="This cohort already overrides this email; edit that override instead.",
            ),
            models.CheckConstraint(
                condition=models.Q(kind="week", week_number__gte=1) | (~models.Q(kind="week") & models.Q(week_number=0)),
                name="email_template_week_number_matches_kind",
                violation_error_message="A weekly email needs its week number; other emails have none.",
            ),
        ]

    def __str__(self):
        what = f"Week {self.week_number}" if self.kind == EmailKind.WEEK else self.get_kind_display()
        return f"{what}{f' ({self.cohort.name})' if self.cohort_id else ''}"


class EmailTemplateVersion(models.Model):
    """One saved state of a template: never changed after it is written.

    `body_html` is the body's Markdown already converted to HTML (with its template tags
    kept), done once here instead of once per learner at every send.
    """

    template = models.ForeignKey(EmailTemplate, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    subject = models.CharField(max_length=200)
    body = models.TextField(help_text="Markdown, with {{ variables }} and {% if %} conditions.")
    body_html = models.TextField(editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    restored_from = models.PositiveIntegerField(null=True, blank=True, help_text="The version this one restored.")

    class Meta:
        ordering = ["template", "-number"]
        constraints = [models.UniqueConstraint(fields=["template", "number"], name="email_template_version_number_unique")]

    def __str__(self):
        return f"{self.template} v{self.number}"


class Delivery(models.Model):
    """The delivery ledger: one row per (learner, cohort, email kind, week, relayed message), unique
    in the database.

    It is the single source of truth for what was sent. The unique constraint, not luck, is
    what prevents a second send: a row is created once, and only the one process that flips
    it from PENDING to SENDING may call the provider for it. See scheduler/ledger.py.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    learner = models.ForeignKey("signups.Learner", on_delete=models.CASCADE, related_name="deliveries")
    cohort = models.ForeignKey("cohorts.Cohort", on_delete=models.CASCADE, related_name="deliveries")
    kind = models.CharField(max_length=20, choices=EmailKind.choices)
    week_number = models.PositiveSmallIntegerField(default=0)
    # For a relayed group message: the message's id in groupmail (an id, not a key: the ledger
    # knows nothing of the apps above it). 0 for the course's own emails, like week_number.
    relayed_message = models.PositiveBigIntegerField(default=0, db_default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    due_at = models.DateTimeField(help_text="When the email became due for this learner.")
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="A pending row waits until then (retry backoff).")
    queued_at = models.DateTimeField(null=True, blank=True, help_text="When a send task was last queued for it.")
    claim = models.UUIDField(null=True, blank=True, help_text="The send pass that holds the row while SENDING.")
    claimed_at = models.DateTimeField(null=True, blank=True)
    provider_call_at = models.DateTimeField(
        null=True, blank=True, help_text="Set just before the provider is called: after a crash, the call may have gone out."
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    class Reason(models.TextChoices):
        """Why a row is where it is, as a code other code may rely on; `reason` adds the details."""

        NONE = "", "-"
        TOO_LATE = "too_late", "Due longer ago than the catch-up limit while nothing was sending"
        NO_TEMPLATE = "no_template", "No email template until the catch-up limit"
        WAITING_FOR_TEMPLATE = "waiting_for_template", "No email template yet: tried again until the catch-up limit"
        NOT_MAILABLE = "not_mailable", "The learner can no longer be mailed"
        RENDER_FAILED = "render_failed", "The template failed for this learner"
        RETRYING = "retrying", "A temporary provider error: tried again later"
        GAVE_UP = "gave_up", "Temporary provider errors until the last attempt"
        REFUSED = "refused", "The provider refused the address"
        CONFIGURATION = "configuration", "A fault on our side: the cohort's sending paused itself"
        AMBIGUOUS = "ambiguous", "Interrupted during the provider call: may or may not have arrived"
        WORKER_STOPPED = "worker_stopped", "A worker stopped before calling the provider"
        OUT_OF_TIME = "out_of_time", "The chunk ran out of time before this row"
        ORGANIZER = "organizer", "Sent by an organizer"
        JOINED_LATER = "joined_later", "The week ended before the learner joined (or resumed)"
        PROVIDER_CONFIRMED = "provider_confirmed", "Interrupted during the provider call; the provider's events show it took the email"

    # What the provider's tracking events said about the email, the first time each (scheduler/events.py).
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True, help_text="A bounce, hard or soft, or a refusal by the provider.")

    reason_code = models.CharField(max_length=24, choices=Reason.choices, blank=True, default=Reason.NONE)
    reason = models.TextField(blank=True, help_text="Details: the provider's answer, the error.")
    # The moment of the dispatch pass that put the row in the ledger, which the pass is given
    # (as every time it writes), rather than the clock at the insert.
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "deliveries"
        permissions = [
            ("send_week_now", "Can send a week of a cohort now"),
            ("resend_failed", "Can resend failed emails"),
            # Granted to no role: superusers, on a development site (scheduler/simulation.py).
            ("simulate_events", "Can simulate tracking events (development outbox only)"),
        ]
        ordering = ["due_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["learner", "cohort", "kind", "week_number", "relayed_message"], name="delivery_once_per_learner_email"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_status_next"),
            models.Index(fields=["cohort", "kind", "week_number", "status"], name="delivery_cohort_week_status"),
            models.Index(fields=["provider_message_id"], name="delivery_provider_id"),
            # The dashboard's quietest groups: each learner's last opened week, read from the index
            # alone (scheduler/dashboard.py). Small: only weekly emails that were opened.
            models.Index(
                fields=["cohort", "learner", "week_number"], name="delivery_opened_week",
                condition=models.Q(kind="week", opened_at__isnull=False),
            ),
            # The dashboard's counts per email (sent, delivered, opened, clicked, bounced), read
            # from the index alone on PostgreSQL (INCLUDE): a round's million rows are wide.
            models.Index(
                fields=["cohort", "kind", "week_number"], name="delivery_cohort_counts",
                include=["status", "delivered_at", "opened_at", "clicked_at", "bounced_at"],
            ),
        ]

    def __str__(self):
        what = f"week {self.week_number}" if self.kind == EmailKind.WEEK else self.kind
        return f"{what} to learner {self.learner_id} ({self.status})"


class CohortPlanning(models.Model):
    """How far dispatch has planned a cohort's emails (scheduler/planning.py).

    Every email of the cohort that fell due by `planned_through`, for every learner mailable
    by then, is in the ledger. A pass then only looks at what changed since: time zones whose
    moment came, learners who became mailable or were grouped. `timezones` are the zones of the
    cohort's mailable learners; `settings_key` the cohort's timing when planned (a change means
    a full pass). A full pass runs every DISPATCH_FULL_PASS_MINUTES whatever happens.
    """

    cohort = models.OneToOneField("cohorts.Cohort", on_delete=models.CASCADE, related_name="+")
    planned_through = models.DateTimeField()
    full_pass_at = models.DateTimeField()
    timezones = models.JSONField(default=list)
    settings_key = models.CharField(max_length=100)

    def __str__(self):
        return f"cohort {self.cohort_id} planned through {self.planned_through:%Y-%m-%d %H:%M}"


class TrackingEvent(models.Model):
    """One event an email provider reported about one of our emails, through its tracking webhook.

    Stored once per (esp, event_key): a webhook the provider sends again, or a replayed payload,
    changes nothing. The web request only stores it; a worker applies its consequences and sets
    `applied_at` (scheduler/events.py). The recipient's address is not kept, only its digest.
    """

    class Type(models.TextChoices):
        # Anymail's normalized event types (anymail.signals.EventType).
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        REJECTED = "rejected", "Rejected by the provider"
        FAILED = "failed", "Failed"
        BOUNCED = "bounced", "Bounced"
        DEFERRED = "deferred", "Deferred"
        DELIVERED = "delivered", "Delivered"
        AUTORESPONDED = "autoresponded", "Auto-reply"
        OPENED = "opened", "Opened"
        CLICKED = "clicked", "Clicked"
        COMPLAINED = "complained", "Marked as spam"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed at the provider"
        SUBSCRIBED = "subscribed", "Subscribed at the provider"
        UNKNOWN = "unknown", "Unknown"

    class Refusal(models.TextChoices):
        """What the event says about the address (scheduler/bounces.py decides)."""

        NONE = "", "-"
        HARD = "hard", "Hard bounce: the address does not work"
        SOFT = "soft", "Soft bounce: not delivered this time"
        COMPLAINT = "complaint", "The recipient marked it as spam"
        UNSUBSCRIBE = "unsubscribe", "The recipient unsubscribed at the provider"
        OURS = "ours", "Refused for a reason on our side (content, policy, reputation)"

    esp = models.CharField(max_length=30, help_text="The webhook it came through: mailgun, amazon_ses, postmark ...")
    event_key = models.CharField(max_length=255, help_text="The provider's event id, or a digest of the event when it gives none.")
    event_type = models.CharField(max_length=20, choices=Type.choices)
    refusal = models.CharField(max_length=20, choices=Refusal.choices, blank=True, default=Refusal.NONE)
    occurred_at = models.DateTimeField(help_text="When the provider says it happened (else when it arrived).")
    received_at = models.DateTimeField()
    message_id = models.CharField(max_length=255, blank=True)
    recipient_digest = models.CharField(max_length=64, blank=True)
    # What the event says about itself, stored as it came (the web request does no lookups): the
    # email's metadata, and the recipient's address, which is emptied once the event is applied.
    metadata_delivery = models.PositiveBigIntegerField(null=True, blank=True)
    metadata_learner = models.UUIDField(null=True, blank=True)
    recipient = models.EmailField(max_length=254, blank=True)
    # Found when applied, through the email's metadata (delivery id, learner), else the provider's
    # message id, else the recipient's address. Neither: orphaned (counted on the dashboard).
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, null=True, blank=True, related_name="events")
    learner = models.ForeignKey("signups.Learner", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    detail = models.CharField(max_length=500, blank=True, help_text="The provider's description and the receiving server's answer.")
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["esp", "event_key"], name="tracking_event_once")]
        indexes = [
            models.Index(fields=["received_at"], name="tracking_event_unapplied", condition=models.Q(applied_at__isnull=True)),
            models.Index(fields=["learner", "occurred_at"], name="tracking_event_learner"),
            models.Index(fields=["received_at"], name="tracking_event_orphaned", condition=models.Q(learner__isnull=True)),
        ]

    def __str__(self):
        return f"{self.get_event_type_display()} from {self.esp} ({self.event_key[:20]})"

    @property
    def is_orphaned(self) -> bool:
        return self.applied_at is not None and self.learner_id is None
