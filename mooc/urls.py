from django.contrib import admin
from django.urls import include, path

from mooc.health import healthz

urlpatterns = [
    path("", include("signups.urls")),
    path("", include("scheduler.urls")),
    path("admin/", admin.site.urls),
    # The providers' tracking webhooks (scheduler/webhooks.py), at Anymail's own paths.
    path("anymail/", include("scheduler.webhooks")),
    path("healthz", healthz, name="healthz"),
]
