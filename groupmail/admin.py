"""Organizers' side of group mail: the messages members sent (metadata only), and each group's mailbox.

Nothing here shows a member's words or address: a message's text and raw bytes are for its
group's members (their mail and the group's page), never loaded here; a sender is their first
name, linking to their learner page (which is for whoever may see learners).
"""

import datetime

from django.contrib import admin
from django.db.models import Count, Exists, OuterRef, Q
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from groupmail.models import GroupMailbox, GroupMailClosure, GroupMailMute, GroupMessage
from groupmail.services import (
    NotHeld, group_mail_close, group_mail_reopen, group_message_discard, group_message_release, member_mute, member_unmute,
)
from mooc.permissions import ActionPermissionsMixin, admin_action
from signups.selectors import group_member_counts

HELD = GroupMessage.Status.HELD
POSTING = GroupMailMute.Kind.POSTING


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


class MessageStatusFilter(admin.SimpleListFilter):
    """Status, held first: the messages waiting for an organizer."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        order = [HELD, GroupMessage.Status.RELAYED, GroupMessage.Status.DISCARDED]
        return [(status.value, status.label) for status in order]

    def queryset(self, request, queryset):
        return queryset.filter(status=self.value()) if self.value() else queryset


@admin.register(GroupMessage)
class GroupMessageAdmin(ActionPermissionsMixin, admin.ModelAdmin):
    list_display = ["subject_shown", "group", "sender_link", "received_at", "size_shown", "status", "hold_reason", "posting_muted"]
    list_filter = [MessageStatusFilter, ("group__cohort", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["group", "sender"]
    search_fields = ["group__slug", "group__name"]  # groups only: members' words and addresses are not searched
    date_hierarchy = "received_at"
    # Metadata only, on the message's page too (never `raw`, `body_text` or `message_id`).
    fields = ["group", "sender_link", "subject", "received_at", "relayed_at", "size_shown", "status", "hold_reason", "reviewed_by"]
    readonly_fields = fields
    actions = ["relay_held", "discard_held", "mute_senders", "unmute_senders"]

    def get_queryset(self, request):
        # A message's bytes may be megabytes: the list and the page never load them.
        muted = GroupMailMute.objects.filter(group=OuterRef("group"), learner=OuterRef("sender"), kind=POSTING)
        return super().get_queryset(request).defer("raw", "body_text").annotate(sender_posting_muted=Exists(muted))

    def has_add_permission(self, request):
        return False  # messages arrive by email

    def has_change_permission(self, request, obj=None):
        return False  # changed only by the actions, which keep the rules

    def has_delete_permission(self, request, obj=None):
        return False  # discarded by the action, which also deletes the words

    @admin.display(description="subject", ordering="subject")
    def subject_shown(self, message):
        return message.subject or "(no subject)"

    @admin.display(description="sender", ordering="sender__first_name")
    def sender_link(self, message):
        url = reverse("admin:signups_learner_change", args=[message.sender_id])
        return format_html('<a href="{}">{}</a>', url, message.sender.first_name or f"Learner {message.sender_id}")

    @admin.display(description="size", ordering="size")
    def size_shown(self, message):
        return filesizeformat(message.size)

    @admin.display(description="sender's messages held", boolean=True)
    def posting_muted(self, message):
        return message.sender_posting_muted

    @admin_action(permission="groupmail.review_groupmessage", description="Relay held messages")
    def relay_held(self, request, queryset):
        now = timezone.now()
        relayed = copies = 0
        for message_id in queryset.filter(status=HELD).values_list("pk", flat=True):
            try:
                copies += group_message_release(message_id, request.user, now)
            except NotHeld:  # another organizer got there first
                continue
            relayed += 1
        self.message_user(request, f"Relayed {_plural(relayed, 'held message', 'held messages')}: {_plural(copies, 'copy', 'copies')} queued.")

    @admin_action(permission="groupmail.review_groupmessage", description="Discard held messages")
    def discard_held(self, request, queryset):
        discarded = 0
        for message_id in queryset.filter(status=HELD).values_list("pk", flat=True):
            try:
                group_message_discard(message_id, request.user)
            except NotHeld:
                continue
            discarded += 1
        self.message_user(request, f"Discarded {_plural(discarded, 'held message', 'held messages')}: never relayed, and their words deleted.")

    @admin_action(permission="groupmail.mute_member", description="Mute the senders’ messages to their group (held for review)")
    def mute_senders(self, request, queryset):
        now = timezone.now()
        senders = set(queryset.values_list("group_id", "sender_id"))
        muted = sum(member_mute(group_id, sender_id, POSTING, now, user=request.user) for group_id, sender_id in senders)
        self.message_user(request, f"Muted {_plural(muted, 'sender', 'senders')} in their group: their next messages are held for review.")

    @admin_action(permission="groupmail.mute_member", description="Unmute the senders’ messages to their group")
    def unmute_senders(self, request, queryset):
        senders = set(queryset.values_list("group_id", "sender_id"))
        unmuted = sum(member_unmute(group_id, sender_id, POSTING) for group_id, sender_id in senders)
        self.message_user(
            request, f"Unmuted {_plural(unmuted, 'sender', 'senders')}: their next messages are relayed. Those held already stay held until relayed or discarded."
        )


class MailClosedFilter(admin.SimpleListFilter):
    title = "mail"
    parameter_name = "mail"

    def lookups(self, request, model_admin):
        return [("open", "Open"), ("closed", "Closed")]

    def queryset(self, request, queryset):
        match self.value():
            case "open":
                return queryset.filter(mail_closed=False)
            case "closed":
                return queryset.filter(mail_closed=True)
        return queryset


@admin.register(GroupMailbox)
class GroupMailboxAdmin(ActionPermissionsMixin, admin.ModelAdmin):
    """Each study group's mail: its address, its members, how busy it is, closed or open."""

    list_display = ["name", "cohort", "address", "members", "messages_last_week", "held", "mail_open"]
    list_filter = [MailClosedFilter, "cohort"]
    list_select_related = ["cohort__course"]
    search_fields = ["name", "slug"]
    list_display_links = None  # the group itself is edited on its own admin page (cohorts)
    actions = ["close_mail", "reopen_mail"]

    def get_queryset(self, request):
        week_ago = timezone.now() - datetime.timedelta(days=7)
        received = ~Q(messages__status=GroupMessage.Status.DISCARDED) & Q(messages__received_at__gte=week_ago)
        return (
            super().get_queryset(request)
            .filter(dissolved_at__isnull=True)  # merged away by re-forming: its members are in another group now
            .annotate(
                messages_in_week=Count("messages", filter=received),
                messages_held=Count("messages", filter=Q(messages__status=HELD)),
                mail_closed=Exists(GroupMailClosure.objects.filter(group=OuterRef("pk"))),
            )
        )

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        # Members are signups' to count: one query for the page's groups, not one per row. Set on
        # the page's rows themselves (the list renders these very objects), never on this admin,
        # which every request shares.
        groups = list(changelist.result_list)
        counts = group_member_counts(group.pk for group in groups)
        for group in groups:
            group.member_count = counts.get(group.pk, 0)
        return changelist

    # Group mail's own permissions decide: the proxy has none (Meta.default_permissions).
    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("groupmail.view_groupmessage")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="address")
    def address(self, group):
        return group.mail_address or "- (group mail is off)"

    @admin.display(description="members")
    def members(self, group):
        return group.member_count

    @admin.display(description="messages in the last 7 days", ordering="messages_in_week")
    def messages_last_week(self, group):
        url = reverse("admin:groupmail_groupmessage_changelist") + f"?group__id__exact={group.pk}"
        return format_html('<a href="{}">{}</a>', url, group.messages_in_week)

    @admin.display(description="held", ordering="messages_held")
    def held(self, group):
        return group.messages_held

    @admin.display(description="mail open", boolean=True, ordering="mail_closed")
    def mail_open(self, group):
        return not group.mail_closed

    @admin_action(permission="groupmail.close_group_mail", description="Close the groups’ mail")
    def close_mail(self, request, queryset):
        now = timezone.now()
        closed = sum(group_mail_close(group_id, now, user=request.user) for group_id in queryset.values_list("pk", flat=True))
        self.message_user(request, f"Closed the mail of {_plural(closed, 'group', 'groups')}: what is sent to them is refused, and senders are told.")

    @admin_action(permission="groupmail.close_group_mail", description="Reopen the groups’ mail")
    def reopen_mail(self, request, queryset):
        reopened = sum(group_mail_reopen(group_id) for group_id in queryset.values_list("pk", flat=True))
        self.message_user(request, f"Reopened the mail of {_plural(reopened, 'group', 'groups')}.")
