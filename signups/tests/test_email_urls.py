"""Each of the signups' emails carries its action's URL written out, in the text part and in the
HTML beside its button (issue 17): mail clients that hide buttons, or a reader who copies the link."""

import datetime

import pytest
from django.core import mail

from signups.services import _render_and_send, learner_links
from signups.tests.factories import EnrollmentFactory

pytestmark = pytest.mark.django_db

URL = "https://example.org/a-signed-token-long-enough-to-copy/"


def contexts(enrollment) -> dict[str, tuple[dict, str | None]]:
    """Each email's context, and the URL its button opens (None: the learner's own page)."""
    cohort = enrollment.cohort
    return {
        "confirmation": ({"enrollment": enrollment, "confirm_url": URL}, URL),
        "address_confirm": ({"new_email": "ada@new.example.org", "confirm_url": URL}, URL),
        "waitlist_invitation": ({"course": cohort.course, "cohort": cohort, "join_url": URL,
                                 "today": datetime.date(2026, 11, 1)}, URL),
        "group_move_offer": ({"cohort": cohort, "group_name": "Group 1", "move_url": URL}, URL),
        "manage_link": ({}, None),
        "already_enrolled": ({"enrollment": enrollment, "joined_from_waitlist": False}, None),
    }


@pytest.mark.parametrize("template", ["confirmation", "address_confirm", "waitlist_invitation", "group_move_offer",
                                      "manage_link", "already_enrolled"])
def test_the_emails_action_url_is_in_the_text_and_visible_in_the_html(template):
    enrollment = EnrollmentFactory()
    context, url = contexts(enrollment)[template]
    url = url or learner_links(enrollment.learner)["manage"]

    _render_and_send(enrollment.learner, template, context, headers=None)

    [message] = mail.outbox
    html = message.alternatives[0][0]
    assert f"\n{url}\n" in message.body  # on a line of its own, to copy
    assert f'>{url}</a>' in html  # written out beside the button, not only behind it
    assert html.count(f'href="{url}"') == 2
