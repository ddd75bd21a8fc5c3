"""Under the learner's own page (signups' me/<token>/...): scheduler.selectors.group_page_url and
groupmail.relay.mute_url build these links for the emails, and a test keeps them in step."""

from django.urls import path

from groupmail import views

app_name = "groupmail"

urlpatterns = [
    path("me/<str:token>/group/<slug:slug>/", views.group_page, name="group"),
    path("me/<str:token>/group/<slug:slug>/mute/", views.group_mute, name="group-mute"),
    path("me/<str:token>/group/<slug:slug>/unmute/", views.group_unmute, name="group-unmute"),
]
