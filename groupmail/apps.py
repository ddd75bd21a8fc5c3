from django.apps import AppConfig


class GroupmailConfig(AppConfig):
    """Group mail: each study group is a small mailing list, relayed through the delivery ledger."""

    name = "groupmail"

    def ready(self):
        from groupmail.relay import copies_build
        from groupmail.services import group_message_on_behalf
        from scheduler import sending
        from scheduler.models import EmailKind
        from signups import checkins

        # The scheduler sends the relayed copies like any ledger row, but never imports the
        # apps above it: groupmail tells it how a copy is built (scheduler/sending.py).
        sending.RELAYED_EMAIL_BUILDERS[EmailKind.GROUP_MESSAGE] = copies_build
        # A stuck learner may ask, on their check-in page, to tell their group: signups never
        # imports groupmail, so groupmail tells it how (signups/checkins.py, GROUP_TELLERS).
        if group_message_on_behalf not in checkins.GROUP_TELLERS:
            checkins.GROUP_TELLERS.append(group_message_on_behalf)
