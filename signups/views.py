"""The learner's pages: the home page with the signup form, confirmation, self-service, unsubscribe.

Every page reached by a learner's secret link (confirm, /me/, the data export, unsubscribe,
joining a round from the waitlist) is sent with `Cache-Control: no-store` (never_cache): it
shows the learner's address and links, which neither the browser of a shared computer nor a
proxy on the way may keep.
"""

import dataclasses
import functools

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html_join
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from cohorts.selectors import cohort_by_slug, course_featured
from signups import checkins, services, suppressions
from signups.checkins import CheckInRefused
from signups.forms import AddressFixForm, SignupForm
from signups.group_checkins import GroupMoveOutcome, group_move_offer_read
from signups.groups import enrollment_group_move_to_active
from signups.models import CheckIn, Enrollment, timezone_names
from signups.selectors import (
    address_change_from_token, cohorts_open_with_room, cohorts_to_switch_to, enrollment_current,
    enrollment_from_confirmation_token, enrollment_learner_email, enrollment_overview, learner_from_token,
    learner_mail_stop_overview, learner_today, waitlist_invitation_from_token,
)
from signups.services import CohortFull, Signup, SignupRefused, WaitlistJoinRefused
from signups.suppressions import AddressFixRefused, AddressTaken
from signups.tokens import AddressChangeExpired, TokenExpired, TokenInvalid, group_move_token_read, learner_token


def client_ip(request) -> str:
    """The visitor's address; behind TRUSTED_PROXIES proxies, the one they saw."""
    proxies = settings.TRUSTED_PROXIES
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if proxies and len(forwarded) >= proxies:
        return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR", "")


@functools.cache
def _timezone_options() -> str:
    """The <option>s of the time zone list, built once: 600 of them cost more than the rest of the page."""
    return format_html_join("", '<option value="{}">', ((name,) for name in sorted(timezone_names())))


def _landing(request, form=None, status=200):
    now = timezone.now()
    course = course_featured(now.date())
    open_cohorts = list(cohorts_open_with_room(now, course=course)) if course else []
    form = form or SignupForm(open_cohorts=open_cohorts)
    context = {"course": course, "open_cohorts": open_cohorts, "form": form, "timezone_options": _timezone_options()}
    return render(request, "signups/landing.html", context, status=status)


def landing(request):
    """The home page: the course, its syllabus, how it works, and the signup form."""
    return _landing(request)


@csrf_exempt  # Partner sites post this form from their own pages; double opt-in makes that safe.
@require_http_methods(["GET", "POST"])
def signup(request):
    if request.method == "GET":
        return redirect(reverse("signups:landing") + "#join")
    now = timezone.now()
    today = now.date()
    course = course_featured(today, with_weeks=False)
    open_cohorts = list(cohorts_open_with_room(now, course=course)) if course else []
    form = SignupForm(request.POST, open_cohorts=open_cohorts)
    if form.is_bot:
        return redirect("signups:signup-sent")  # tell a bot nothing
    if course is None:
        return HttpResponseBadRequest("There is no course to sign up for yet.")
    if not form.is_valid():
        return _landing(request, form=form, status=400)
    data = form.cleaned_data
    limited = services.signup_rate_limited(client_ip(request), data["email"])
    if limited == "ip":
        return render(request, "signups/rate_limited.html", status=429)
    cohort = data["cohort"]
    if limited is None:
        try:
            services.learner_signup(
                Signup(
                    email=data["email"], first_name=data["first_name"], timezone=data["timezone"],
                    experience=data["experience"], wants_group=data["wants_group"],
                    course=cohort.course if cohort else course, cohort=cohort,
                ),
                now=now,
            )
        except CohortFull:  # the last seat went while the form was being filled in
            # Asked again with the rounds open now, the form says the chosen one is full and offers the rest.
            form = SignupForm(request.POST, open_cohorts=list(cohorts_open_with_room(now, course=course)))
            form.is_valid()
            return _landing(request, form=form, status=409)
    # Over the per-address limit: the same answer, and no email (no mail-bombing anybody).
    url = reverse("signups:signup-sent")
    return redirect(f"{url}?waitlist=1" if cohort is None else url)


def signup_sent(request):
    return render(request, "signups/signup_sent.html", {"waitlist": request.GET.get("waitlist") == "1"})


def _token_problem(request, problem: str, resend_url: str = "", email: str = ""):
    context = {"problem": problem, "resend_url": resend_url, "email": email}
    return render(request, "signups/token_problem.html", context, status=400)


def _confirmation_link_problem(request, error: TokenExpired | TokenInvalid):
    if isinstance(error, TokenExpired):
        email = enrollment_learner_email(error.enrollment_id)
        return _token_problem(request, "expired", reverse("signups:confirm-resend"), email)
    return _token_problem(request, "invalid", reverse("signups:confirm-resend"))


def _confirmed_page(request, enrollment, already_confirmed: bool):
    context = {
        "enrollment": enrollment,
        "already_confirmed": already_confirmed,
        "manage_url": reverse("signups:manage", args=[learner_token(enrollment.learner.public_id)]),
    }
    return render(request, "signups/confirmed.html", context)


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def confirm(request, token):
    """Only a POST confirms. GET and HEAD show one Confirm button: mail security scanners
    (Safe Links, Mimecast) fetch every link in a message before its reader sees it."""
    if request.method == "POST":
        try:
            confirmation = services.enrollment_confirm(token, now=timezone.now())
        except (TokenExpired, TokenInvalid) as error:
            return _confirmation_link_problem(request, error)
        return _confirmed_page(request, confirmation.enrollment, confirmation.already_confirmed)
    try:
        enrollment = enrollment_from_confirmation_token(token)
    except (TokenExpired, TokenInvalid) as error:
        return _confirmation_link_problem(request, error)
    if enrollment.status != Enrollment.Status.PENDING:
        return _confirmed_page(request, enrollment, already_confirmed=True)
    return render(request, "signups/confirm.html", {"enrollment": enrollment})


def _fresh_link_send(request, send):
    """Mail a fresh link to the posted address, within the signup limits; the same answer always."""
    email = request.POST.get("email", "").strip()
    if email and not services.signup_rate_limited(client_ip(request), email):
        send(email, now=timezone.now())
    return redirect("signups:signup-sent")


@require_POST
def confirm_resend(request):
    return _fresh_link_send(request, services.confirmation_resend)


@require_POST
def manage_link_resend(request):
    return _fresh_link_send(request, services.manage_link_send)


def _learner_or_problem(request, token):
    try:
        return learner_from_token(token), None
    except TokenInvalid:
        return None, _token_problem(request, "invalid", reverse("signups:manage-resend"))


@never_cache
def manage(request, token):
    learner, problem = _learner_or_problem(request, token)
    if problem:
        return problem
    now = timezone.now()
    enrollment = enrollment_current(learner)
    context = {
        "learner": learner,
        "token": token,
        "enrollment": enrollment,
        # The round as the learner lives it (their own date); signup windows go by the site's clock, as switching does.
        "overview": enrollment_overview(enrollment, learner_today(learner, now)) if enrollment else None,
        "switch_to": list(cohorts_to_switch_to(enrollment, now)) if enrollment else [],
        "progress": checkins.enrollment_progress(enrollment, learner.timezone, now) if enrollment else [],
        "mail_stop": learner_mail_stop_overview(learner),
        "address_form": AddressFixForm(initial={"email": learner.email}),
    }
    return render(request, "signups/manage.html", context)


@never_cache
@require_POST
def manage_address_fix(request, token):
    """"Fix your address", on the page of a learner whose address failed: the same address is
    marked fixed at once; a new one gets a link to confirm it (through the outbox). Within the
    signup limits, since it may send an email."""
    learner, problem = _learner_or_problem(request, token)
    if problem:
        return problem
    back = redirect(reverse("signups:manage", args=[token]) + "#mail")
    form = AddressFixForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors["email"]))
        return back
    email = form.cleaned_data["email"]
    if services.signup_rate_limited(client_ip(request), email):
        messages.error(request, "You have asked for this too many times in the last hour: please try again in an hour.")
        return back
    try:
        fix = suppressions.learner_address_fix(learner.pk, email, now=timezone.now())
    except TokenInvalid:  # erased meanwhile
        return _token_problem(request, "invalid", reverse("signups:manage-resend"))
    except AddressFixRefused as refusal:
        messages.error(request, str(refusal))
        return back
    if fix.same_address:
        messages.success(request, "Thank you: we have told the organizers that your address works again. They will restart your emails.")
    else:
        messages.success(request, f"We have sent a link to {fix.email}: open it and press the button to use this address.")
    return back


def _address_change_problem(request, error: AddressChangeExpired | TokenInvalid):
    if isinstance(error, AddressChangeExpired):
        return _token_problem(request, "address_expired")
    return _token_problem(request, "invalid", reverse("signups:manage-resend"))


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def address_change(request, token):
    """The link mailed to a learner's new address. Only a POST changes the address; GET and HEAD
    show one button: mail security scanners fetch every link in a message."""
    try:
        if request.method == "POST":
            change = suppressions.learner_address_change(token, now=timezone.now())
            return render(request, "signups/address_changed.html", {"learner": change.learner, "already": change.already})
        asked = address_change_from_token(token)
    except (AddressChangeExpired, TokenInvalid) as error:
        return _address_change_problem(request, error)
    except AddressFixRefused as refusal:
        status = 409 if isinstance(refusal, AddressTaken) else 400
        return render(request, "signups/address_change.html", {"problem": str(refusal)}, status=status)
    if asked.already:
        return render(request, "signups/address_changed.html", {"learner": asked.learner, "already": True})
    context = {"new_email": asked.new_email, "problem": asked.problem}
    return render(request, "signups/address_change.html", context, status=400 if asked.problem else 200)


STATUS_CHANGE_MESSAGES = {  # (when done now, when it was done already)
    "pause": ("Your weekly emails are paused.", "Your emails were already paused."),
    "resume": ("Your weekly emails will start again.", "Your emails were already on."),
    "leave": ("You have left the course. We will not email you about it again.", "You had already left the course."),
}


@never_cache
@require_POST
def manage_action(request, token, action):
    learner, problem = _learner_or_problem(request, token)
    if problem:
        return problem
    now = timezone.now()
    enrollment = enrollment_current(learner)
    try:
        if enrollment is None:
            raise SignupRefused("You have no current enrollment to change.")
        match action:
            case "switch":
                cohort = cohort_by_slug(request.POST.get("cohort", ""))
                if cohort is None:
                    raise SignupRefused("Please choose a round from the list.")
                services.enrollment_switch_cohort(enrollment, cohort, today=now.date(), now=now)
                messages.success(request, f"Done: you are now in {cohort.name}, starting {cohort.start_date:%A %-d %B}.")
                return redirect("signups:manage", token=token)
            case "pause":
                changed = services.enrollment_pause(enrollment, now=now)
            case "resume":
                changed = services.enrollment_resume(enrollment, now=now)
            case "leave":
                changed = services.enrollment_leave(enrollment, now=now)
        done, already = STATUS_CHANGE_MESSAGES[action]
        messages.success(request, done if changed else already)
    except SignupRefused as refusal:
        messages.error(request, str(refusal))
    return redirect("signups:manage", token=token)


@never_cache
def manage_export(request, token):
    learner, problem = _learner_or_problem(request, token)
    if problem:
        return problem
    response = JsonResponse(services.learner_data_export(learner), json_dumps_params={"indent": 2})
    response["Content-Disposition"] = 'attachment; filename="mechanical-mooc-my-data.json"'
    return response


@never_cache
@require_http_methods(["GET", "POST"])
def manage_erase(request, token):
    learner, problem = _learner_or_problem(request, token)
    if problem:
        return problem
    if request.method == "POST":
        services.learner_erase(learner, today=timezone.now().date())
        return render(request, "signups/erased.html")
    return render(request, "signups/erase_confirm.html", {"learner": learner, "token": token})


@csrf_exempt  # RFC 8058 one-click: mail clients POST here with no cookie, no token, no login.
@never_cache
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token):
    learner, problem = _learner_or_problem(request, token)
    if problem:
        return problem
    if request.method == "POST":
        changed = services.learner_unsubscribe(learner, now=timezone.now())
        return render(request, "signups/unsubscribed.html", {"already": not changed})
    return render(request, "signups/unsubscribe.html", {"learner": learner, "already": learner.is_unsubscribed})


def _waitlist_joined_page(request, enrollment, already: bool):
    context = {
        "enrollment": enrollment,
        "cohort": enrollment.cohort,
        "already": already,
        "today": timezone.now().date(),
        "manage_url": reverse("signups:manage", args=[learner_token(enrollment.learner.public_id)]),
    }
    return render(request, "signups/waitlist_joined.html", context)


def _waitlist_invitation_page(request, invitation, status: int = 200):
    context = {
        "invitation": invitation,
        "cohort": invitation.cohort,
        "problem": invitation.problem,
        "today": timezone.now().date(),
        "manage_url": reverse("signups:manage", args=[learner_token(invitation.learner.public_id)]),
    }
    return render(request, "signups/waitlist_join.html", context, status=status)


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def waitlist_join(request, token):
    """Only a POST joins the round. GET and HEAD show it with one Join button, or say why it
    cannot be joined: mail security scanners fetch every link in a message."""
    now = timezone.now()
    try:
        if request.method == "POST":
            joined = services.waitlist_join(token, now=now)
            return _waitlist_joined_page(request, joined.enrollment, joined.already)
        invitation = waitlist_invitation_from_token(token, now)
    except TokenInvalid:
        return _token_problem(request, "invalid", reverse("signups:manage-resend"))
    except WaitlistJoinRefused as refusal:
        return _waitlist_invitation_page(request, refusal.invitation, status=409)
    if invitation.joined:
        invitation.current.learner = invitation.learner
        return _waitlist_joined_page(request, invitation.current, already=True)
    return _waitlist_invitation_page(request, invitation)


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def group_move(request, token):
    """A learner in a quiet group takes up the offer of a move (re-forming by activity). Only a
    POST moves: GET and HEAD show the offer with one button, since mail scanners fetch links."""
    try:
        enrollment_id, group_id = group_move_token_read(token)
    except TokenInvalid:
        return _token_problem(request, "invalid", reverse("signups:manage-resend"))
    offer = group_move_offer_read(enrollment_id, group_id, timezone.now())
    if offer is None:
        return _token_problem(request, "invalid", reverse("signups:manage-resend"))
    if request.method == "POST" and offer.outcome is None:
        move = enrollment_group_move_to_active(enrollment_id, group_id, now=timezone.now())
        offer = dataclasses.replace(offer, outcome=move.outcome, group=move.group)
    context = {
        "offer": offer, "outcome": offer.outcome.value if offer.outcome else "",
        "manage_url": reverse("signups:manage", args=[learner_token(offer.learner.public_id)]),
    }
    return render(request, "signups/group_move.html", context, status=409 if offer.outcome == GroupMoveOutcome.NO_GROUP else 200)


# --- Weekly check-ins (signups/checkins.py has the rules) -----------------------------------------


def _local_moment(moment, timezone_name: str) -> str:
    """A moment as the learner reads it on their own clock, e.g. "Monday 7 December, 09:00"."""
    return f"{moment.astimezone(checkins.zone_of(timezone_name)):%A %-d %B, %H:%M}"


def _checkin_page(request, token: str, checkin, *, answer: str, recorded: bool = False, told=None, problem: str = "", status: int = 200):
    """The check-in page: asking (GET), the answer recorded and what helps next (POST), the group
    told, or why nothing could be recorded."""
    learner, now = checkin.learner, timezone.now()
    current = checkin.current
    shown = current.answer if recorded and current else answer
    context = {
        "checkin": checkin,
        "week": checkin.week,
        "answer": shown,
        "answer_label": CheckIn.Answer(shown).label,
        "answers": CheckIn.Answer.choices,
        "current_label": current.get_answer_display() if current else "",
        "recorded": recorded,
        "told": told,
        # Outside the week's window (or the round): nothing on the page but why.
        "problem": checkin.problem or "",
        # Why the group could not be told (checkins.CheckInRefused): shown beside the answer.
        "tell_problem": "" if checkin.problem else problem,
        "checkin_token": token,
        "opens_at": _local_moment(checkin.opens_at, learner.timezone),
        "closes_at": _local_moment(checkin.closes_at, learner.timezone),
        "token": learner_token(learner.public_id),
        "group": checkin.group,
        "group_mail_on": checkins.group_mail_on(),
        "note_max_length": checkins.NOTE_MAX_LENGTH,
    }
    if recorded and shown == CheckIn.Answer.BEHIND and checkin.enrollment is not None:
        # The next round, offered with one click: the self-service page's own switch, as it is there.
        context["next_round"] = checkins.next_round_to_drop_back_to(checkin, now.date())
    return render(request, "signups/checkin.html", context, status=status)


# One-click, as the RFC 8058 unsubscribe: the signed link is the credential, and it is in the
# URL. A CSRF token would protect nothing: whoever can make a browser post here must know the link
# already, and with it can post without any browser; a forged cross-site post could only record an
# answer of the forger's own. Without it the page's POST needs no cookie (what a burst of Monday
# clicks costs: bench/bench_checkins.py), and a page kept open for days still works.
@csrf_exempt
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def checkin(request, token, answer):
    """A link of the weekly email: GET and HEAD show the week and one button (mail scanners fetch
    every link in a message, and record nothing); the POST records the answer, changeable until
    the next week's email, and answers helpfully."""
    now = timezone.now()
    try:
        if request.method == "POST":
            recorded = checkins.checkin_record(token, answer, now)
            return _checkin_page(request, token, recorded, answer=answer, recorded=True)
        week = checkins.checkin_week_from_token(token, now)
    except TokenInvalid:
        return _token_problem(request, "invalid", reverse("signups:manage-resend"))
    except CheckInRefused as refusal:
        return _checkin_page(request, token, refusal.checkin, answer=answer, problem=refusal.problem, status=409)
    return _checkin_page(request, token, week, answer=answer)


@never_cache
@require_POST
def checkin_tell_group(request, token):
    """A stuck learner's consent, given on the page of their answer: tell their group."""
    now = timezone.now()
    try:
        told = checkins.checkin_group_tell(token, request.POST.get("note", ""), now)
    except TokenInvalid:
        return _token_problem(request, "invalid", reverse("signups:manage-resend"))
    except CheckInRefused as refusal:
        return _checkin_page(request, token, refusal.checkin, answer=CheckIn.Answer.STUCK, recorded=refusal.checkin.current is not None,
                             problem=refusal.problem, status=409)
    return _checkin_page(request, token, told.checkin, answer=CheckIn.Answer.STUCK, recorded=True, told=told)
