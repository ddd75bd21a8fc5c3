from django.contrib import admin
from django.urls import include, path

from mooc.health import healthz

urlpatterns = [
    path("", include("signups.urls")),
    path("", include("scheduler.urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
]
