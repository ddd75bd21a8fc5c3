from django.urls import path

from scheduler import views

app_name = "scheduler"

urlpatterns = [
    path("dev/outbox/", views.outbox_list, name="outbox-list"),
    path("dev/outbox/<str:name>/", views.outbox_detail, name="outbox-detail"),
    path("dev/outbox/<str:name>/raw/", views.outbox_raw, name="outbox-raw"),
]
