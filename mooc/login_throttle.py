"""Throttling failed logins to the admin: django-axes, wired to this site (README, "Security").

Failures are counted per username and visitor address together (ADMIN_LOGIN_FAILURE_LIMIT
within ADMIN_LOGIN_LOCKOUT_MINUTES of each other); at the limit that username is locked
from that address until ADMIN_LOGIN_LOCKOUT_MINUTES have passed without another attempt.
Counting by the pair, not the username alone, keeps a stranger from locking an organizer
out by failing on purpose; counting by address alone would lock out a whole office behind
one address. Attempts are rows in the database (axes' AccessAttempt), so every web process
shares them and an administrator can lift a lock (`manage.py axes_reset_username NAME`).
"""

import ipaddress

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_client_username
from django.conf import settings
from django.shortcuts import render

from signups.views import client_ip


class LoginThrottleBackend(AxesStandaloneBackend):
    """Refuses a login while its username and address are locked out; authenticates nobody itself.

    A login without a request is not one over HTTP (the test client's `login()`, a shell):
    there is no visitor to throttle, where axes itself would refuse it with an error.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def login_client_ip(request) -> str | None:
    """The visitor's address as the signup limits see it (behind TRUSTED_PROXIES proxies), or
    the connection's own when that is not an IP address (a mis-set TRUSTED_PROXIES would
    otherwise let a client name any address it likes, or none)."""
    address = client_ip(request)
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return request.META.get("REMOTE_ADDR") or None


def lockout_response(request, original_response, credentials):
    """What a locked-out login attempt gets: HTTP 429 and a page saying when to try again."""
    context = {
        "username": get_client_username(request, credentials) or "",
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "lockout_minutes": settings.ADMIN_LOGIN_LOCKOUT_MINUTES,
    }
    return render(request, "admin/login_locked_out.html", context, status=429)
