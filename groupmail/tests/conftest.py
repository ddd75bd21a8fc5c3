import datetime

import pytest

from cohorts.models import StudyGroup
from scheduler.tests.conftest import course, provider  # noqa: F401  (the scheduler's fixtures, shared)
from scheduler.tests.helpers import START, at
from signups.tests.factories import EnrollmentFactory

DOMAIN = "groups.example.org"
# A moment in week 1 of the round, which starts START.
IN_WEEK_1 = at(START + datetime.timedelta(days=2), 12)


@pytest.fixture
def group_mail(settings):
    """Group mail on, at DOMAIN, with the default limits."""
    settings.GROUP_MAIL_DOMAIN = DOMAIN
    settings.GROUP_MAIL_MEMBER_MESSAGES_PER_HOUR = 10
    settings.GROUP_MAIL_GROUP_MESSAGES_PER_HOUR = 30
    settings.GROUP_MAIL_MAX_MESSAGE_BYTES = 1024 * 1024
    settings.GROUP_MAIL_MAX_ATTACHMENT_BYTES = 100 * 1024
    return settings


@pytest.fixture
def study_group(course, provider, group_mail):  # noqa: F811
    """Group 3 of a running round, with four active members: ada (the usual sender), bob, cy, dee."""
    from cohorts.models import Cohort

    cohort = Cohort.objects.create(
        course=course, name="Winter round", slug="winter", start_date=START,
        signup_opens_on=START - datetime.timedelta(weeks=4), signup_closes_on=START,
    )
    group = StudyGroup.objects.create(cohort=cohort, number=3, name="Group 3", slug="winter-3", utc_offset_minutes=0)
    for name in ("ada", "bob", "cy", "dee"):
        EnrollmentFactory(cohort=cohort, group=group, learner__email=f"{name}@example.org", learner__first_name=name.title())
    return group
