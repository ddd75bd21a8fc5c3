from django.urls import path

from signups import views

app_name = "signups"

urlpatterns = [
    path("", views.landing, name="landing"),
]
