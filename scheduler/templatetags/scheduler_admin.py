"""Admin template tags of the scheduler's: the banner when no worker reports in."""

from django import template
from django.utils import timezone

from scheduler.selectors import worker_absence

register = template.Library()


@register.inclusion_tag("admin/scheduler/worker_banner.html", takes_context=True)
def worker_banner(context):
    """The banner (admin/scheduler/worker_banner.html), for staff who can act on it."""
    user = context.get("user")
    absence = worker_absence(timezone.now()) if user is not None and user.is_staff else None
    return {"section": {"absence": absence}}
