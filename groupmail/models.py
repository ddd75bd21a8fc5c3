"""Group mail: each study group is a small mailing list (issue 15).

A message reaches us as an InboundMessage (an ESP's inbound webhook, or the local SMTP listener
in development), stored once and screened by a worker (groupmail/services.py). What it decides
is kept on the row: relayed to a group (one GroupMessage per group it was sent to), held for an
organizer, or refused with a reason. A GroupMessage's copies to the other members go through the
delivery ledger (scheduler's Delivery, kind group_message), one row per member, so each is sent
once, rate limited, retried and tracked like any course email.

The archive a group's page shows is its GroupMessages: deleted with the round (the group
cascades with its cohort) and with an erased sender (the sender cascades with the learner).
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from cohorts.models import StudyGroup


class InboundMessage(models.Model):
    """One message as it arrived: stored by the web request (or the SMTP listener), screened by a worker.

    Stored once per `dedupe_key` (the provider's event id where it gives one, else the
    message's Message-ID and envelope recipients, else a digest of its bytes): an inbound
    webhook delivered twice is screened, and relayed, once. `raw` is emptied once screened.
    """

    class Status(models.TextChoices):
        RECEIVED = "received", "Waiting to be screened"
        RELAYED = "relayed", "Relayed"
        HELD = "held", "Held for an organizer"
        REFUSED = "refused", "Refused"

    class Refusal(models.TextChoices):
        """Why a message was not relayed, as a code (`detail` adds the specifics)."""

        NONE = "", "-"
        AUTOMATED = "automated", "An auto-reply, a bounce or a loop"
        MALFORMED = "malformed", "Not a readable email"
        TOO_BIG = "too_big", "Larger than the size limit"
        UNKNOWN_GROUP = "unknown_group", "Sent to no group we know"
        CLOSED = "closed", "The group's mail is closed"
        NOT_MEMBER = "not_member", "The sender is not a member of the group"
        OFF = "off", "Group mail is off on this site"

    esp = models.CharField(max_length=30, help_text="Where it came from: mailgun, postmark ... or smtp (the local listener).")
    dedupe_key = models.CharField(max_length=255, unique=True)
    raw = models.BinaryField(help_text="The message as received (RFC 5322 bytes); emptied once screened.")
    size = models.PositiveIntegerField(help_text="Bytes, as received.")
    envelope_sender = models.CharField(max_length=254, blank=True)
    envelope_recipients = models.JSONField(default=list, blank=True)
    received_at = models.DateTimeField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RECEIVED)
    refusal = models.CharField(max_length=20, choices=Refusal.choices, blank=True, default=Refusal.NONE)
    detail = models.CharField(max_length=500, blank=True)
    screened_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-pk"]
        indexes = [
            models.Index(fields=["received_at"], name="inbound_unscreened", condition=Q(status="received")),
        ]

    def __str__(self):
        return f"Inbound message {self.pk} from {self.esp} ({self.get_status_display()})"


class GroupMessage(models.Model):
    """One member's message to their group: the archive's entry, and what the ledger's copies relay."""

    class Status(models.TextChoices):
        RELAYED = "relayed", "Relayed"
        HELD = "held", "Held for review"
        DISCARDED = "discarded", "Discarded by an organizer"

    class HoldReason(models.TextChoices):
        NONE = "", "-"
        MEMBER_RATE = "member_rate", "The member sent more than the hourly limit"
        GROUP_RATE = "group_rate", "The group received more than the hourly limit"
        MUTED = "muted", "An organizer muted this member"

    group = models.ForeignKey("cohorts.StudyGroup", on_delete=models.CASCADE, related_name="messages")
    inbound = models.ForeignKey(InboundMessage, on_delete=models.SET_NULL, null=True, blank=True, related_name="group_messages")
    sender = models.ForeignKey("signups.Learner", on_delete=models.CASCADE, related_name="group_messages")
    status = models.CharField(max_length=20, choices=Status.choices)
    hold_reason = models.CharField(max_length=20, choices=HoldReason.choices, blank=True, default=HoldReason.NONE)
    subject = models.CharField(max_length=300, blank=True)
    message_id = models.CharField(max_length=255, blank=True, help_text="The original Message-ID, kept on every copy.")
    raw = models.BinaryField(help_text="The member's message as received: what each copy is built from.")
    body_text = models.TextField(blank=True, help_text="Its text, for the group's page.")
    size = models.PositiveIntegerField()
    received_at = models.DateTimeField()
    relayed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-received_at", "-pk"]
        permissions = [("review_groupmessage", "Can relay or discard held group messages")]
        constraints = [
            models.UniqueConstraint(fields=["group", "inbound"], name="group_message_once_per_inbound"),
        ]
        indexes = [
            # The rate limits ask how many a member, and a group, sent in the last hour.
            models.Index(fields=["sender", "received_at"], name="group_message_sender_recent"),
            models.Index(fields=["group", "received_at"], name="group_message_group_recent"),
        ]

    def __str__(self):
        return f"{self.subject or '(no subject)'} to {self.group}"


class GroupMailMute(models.Model):
    """A member and one group's mail, muted: they stop receiving it (their own choice), or their
    messages to it are held for review (an organizer's). Keyed by group: a member who moves to
    another group starts unmuted there."""

    class Kind(models.TextChoices):
        RECEIVING = "receiving", "Receives none of the group's mail (the learner's choice)"
        POSTING = "posting", "Messages held for review (an organizer's choice)"

    group = models.ForeignKey("cohorts.StudyGroup", on_delete=models.CASCADE, related_name="+")
    learner = models.ForeignKey("signups.Learner", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        permissions = [("mute_member", "Can mute a member's messages to their group")]
        constraints = [models.UniqueConstraint(fields=["group", "learner", "kind"], name="group_mail_mute_once")]

    def __str__(self):
        return f"{self.learner_id} in {self.group_id}: {self.get_kind_display()}"


class GroupMailClosure(models.Model):
    """A group whose mail an organizer closed: nothing sent to its address is relayed."""

    group = models.OneToOneField("cohorts.StudyGroup", on_delete=models.CASCADE, related_name="+")
    closed_at = models.DateTimeField()
    closed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        permissions = [("close_group_mail", "Can close and reopen a group's mail")]

    def __str__(self):
        return f"Group {self.group_id}'s mail closed"


class SenderNotice(models.Model):
    """A short explanation sent to someone whose message was not relayed: at most one per
    address and day (the address's digest, never the address), so a loop or a persistent
    sender gets one a day at most."""

    sender_digest = models.CharField(max_length=64)
    day = models.DateField()
    refusal = models.CharField(max_length=20, choices=InboundMessage.Refusal.choices)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["sender_digest", "day"], name="sender_notice_once_a_day")]

    def __str__(self):
        return f"Notice on {self.day} ({self.refusal})"


class GroupMailbox(StudyGroup):
    """A study group as its mail's organizers see it, in groupmail's admin: its address, how
    busy it is, closed or open. cohorts owns the group's own admin and knows nothing of its mail.
    No permissions of its own: the admin asks for group mail's (view_groupmessage, close_group_mail)."""

    class Meta:
        proxy = True
        verbose_name = "group mailbox"
        verbose_name_plural = "group mailboxes"
        default_permissions = ()
