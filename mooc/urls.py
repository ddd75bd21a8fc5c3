from django.contrib import admin
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path

from mooc.health import healthz


def favicon(request):
    """Browsers ask for /favicon.ico on pages that name no icon (the admin, a plain error page):
    send them to the static file rather than leave a 404 in the console."""
    return redirect(static("favicon.ico"), permanent=True)


urlpatterns = [
    # The providers' tracking webhooks (scheduler/webhooks.py) and inbound webhooks
    # (groupmail/webhooks.py), at Anymail's own paths. First: hundreds of requests a second
    # need not be tried against every page's pattern before.
    path("anymail/", include("scheduler.webhooks")),
    path("anymail/", include("groupmail.webhooks")),
    path("", include("signups.urls")),
    path("", include("scheduler.urls")),
    # A study group's page and its mute links, under the learner's own page (me/<token>/group/...).
    path("", include("groupmail.urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("favicon.ico", favicon),
]
