"""A study group's page and muting its mail, under the learner's own signed link
(/me/<token>/group/<slug>/, scheduler.selectors.group_page_url builds it for the emails).

The token is the learner's self-service token (signups/tokens.py): whoever holds the link is the
learner. A token that does not work, and a group the learner is not a current member of (or
that does not exist), get the same page as any other bad link: nobody learns which groups exist.
Every page here shows the learner's group and is sent with `Cache-Control: no-store`.
"""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from groupmail import selectors, services
from groupmail.models import GroupMailMute
from signups.selectors import learner_from_token
from signups.tokens import TokenInvalid

RECEIVING = GroupMailMute.Kind.RECEIVING


def _bad_link(request):
    """signups' page for a link that does not work, with its "send me a fresh link" form."""
    context = {"problem": "invalid", "resend_url": reverse("signups:manage-resend")}
    return render(request, "signups/token_problem.html", context, status=400)


def _learner(token: str):
    try:
        return learner_from_token(token)
    except TokenInvalid:
        return None


@never_cache
@require_safe
def group_page(request, token, slug):
    """The group's name, round, address, members (first names and time zones), whether the
    learner's mail from it is muted, and its recent messages in the learner's time zone."""
    learner = _learner(token)
    page = selectors.group_page(learner.pk, slug, request.GET.get("page", 1)) if learner else None
    if page is None:
        return _bad_link(request)
    zone = selectors.learner_zone(learner.timezone)
    context = {"page": page, "token": token, "zone": zone, "zone_name": str(zone)}
    return render(request, "groupmail/group_page.html", context)


# Mail programs and providers POST RFC 8058's one-click unsubscribe (body
# `List-Unsubscribe=One-Click`, from List-Unsubscribe in each relayed copy) with no cookie and no
# CSRF token: the link's signed token is the credential. A GET only asks, with a button: mail
# scanners fetch every link in a message, and must mute nothing.
@csrf_exempt
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def group_mute(request, token, slug):
    learner = _learner(token)
    group = selectors.group_of_member(learner.pk, slug) if learner else None
    if group is None:
        return _bad_link(request)
    if request.method == "POST":
        muted_now = services.member_mute(group.pk, learner.pk, RECEIVING, timezone.now())
        return render(request, "groupmail/muted.html", {"group": group, "token": token, "already": not muted_now})
    context = {"group": group, "token": token, "already": selectors.receiving_muted(group.pk, learner.pk)}
    return render(request, "groupmail/mute.html", context)


@never_cache
@require_POST
def group_unmute(request, token, slug):
    """Undo the learner's mute (CSRF-protected: only a button on our own pages posts here)."""
    learner = _learner(token)
    group = selectors.group_of_member(learner.pk, slug) if learner else None
    if group is None:
        return _bad_link(request)
    if services.member_unmute(group.pk, learner.pk, RECEIVING):
        messages.success(request, f"Done: you get {group.name}’s messages by email again.")
    else:
        messages.success(request, f"You already get {group.name}’s messages by email.")
    return redirect("groupmail:group", token=token, slug=slug)
