"""The course's own emails point grouped learners at their group's address."""

import pytest
from django.core import mail

from groupmail.tests.conftest import DOMAIN
from scheduler.tests.helpers import START, at, run_pass

pytestmark = [pytest.mark.django_db, pytest.mark.clock(at(START, 12))]

GROUP = f"winter-3@{DOMAIN}"


def weekly_emails(clock) -> dict:
    """Week 1's emails, sent on the round's first Monday, by recipient."""
    run_pass(at(START, 12))
    return {message.to[0]: message for message in mail.outbox if "week 1" in message.subject}


def test_a_grouped_learners_weekly_email_replies_to_the_group_and_says_so(study_group, clock):
    email = weekly_emails(clock)["bob@example.org"]

    assert email.reply_to == [GROUP]
    assert f"Reply to this email to write to your whole group, or write to {GROUP} any time" in email.body
    assert "/group/winter-3/" in email.body  # the group's page: its discussion link, this cohort having none


def test_without_group_mail_the_weekly_email_has_no_reply_to(study_group, clock, settings):
    settings.GROUP_MAIL_DOMAIN = ""

    email = weekly_emails(clock)["bob@example.org"]

    assert email.reply_to == [] and "Reply to this email" not in email.body


def test_a_learner_in_no_group_gets_no_reply_to(study_group, clock):
    from signups.tests.factories import EnrollmentFactory

    EnrollmentFactory(cohort=study_group.cohort, learner__email="solo@example.org", wants_group=False)

    email = weekly_emails(clock)["solo@example.org"]

    assert email.reply_to == []
