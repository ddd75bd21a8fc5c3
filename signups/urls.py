from django.urls import path, re_path

from signups import views

app_name = "signups"

urlpatterns = [
    path("", views.landing, name="landing"),
    path("signup/", views.signup, name="signup"),
    path("signup/sent/", views.signup_sent, name="signup-sent"),
    path("confirm/resend/", views.confirm_resend, name="confirm-resend"),
    path("confirm/<str:token>/", views.confirm, name="confirm"),
    path("me/resend/", views.manage_link_resend, name="manage-resend"),
    path("me/<str:token>/", views.manage, name="manage"),
    path("me/<str:token>/export/", views.manage_export, name="manage-export"),
    path("me/<str:token>/erase/", views.manage_erase, name="manage-erase"),
    path("me/<str:token>/address/", views.manage_address_fix, name="manage-address-fix"),
    path("address/<str:token>/", views.address_change, name="address-change"),
    re_path(r"^me/(?P<token>[^/]+)/(?P<action>switch|pause|resume|leave)/$", views.manage_action, name="manage-action"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("waitlist/<str:token>/join/", views.waitlist_join, name="waitlist-join"),
    path("group/<str:token>/move/", views.group_move, name="group-move"),
    # The links of each weekly email (signups/checkins.py builds them: checkin/<token>/<answer>/).
    re_path(r"^checkin/(?P<token>[^/]+)/(?P<answer>done|behind|stuck)/$", views.checkin, name="checkin"),
    path("checkin/<str:token>/tell-group/", views.checkin_tell_group, name="checkin-tell-group"),
]
