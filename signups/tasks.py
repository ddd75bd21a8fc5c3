import logging

from celery import shared_task
from django.utils import timezone

from signups.groups import cohorts_groups_form_due

logger = logging.getLogger(__name__)


@shared_task
def groups_form_due() -> None:
    for cohort, outcome in cohorts_groups_form_due(timezone.now()).items():
        if isinstance(outcome, str):
            logger.info("Groups not formed for %s: %s", cohort, outcome)
        else:
            logger.info("Formed %d groups for %s (%d learners)", len(outcome.groups), cohort, outcome.learners)
