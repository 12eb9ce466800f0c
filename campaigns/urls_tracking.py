"""Opt-in open and click tracking, mounted at /t/ in the "tracking" namespace. Public: no session, no cookie; a
signed token naming one delivery is the credential, and a click's target is a signed URL from the campaign's
content (campaigns.tracking). Only GET and HEAD."""
from django.urls import path

from campaigns import views_tracking
from hipaamail.access import public

app_name = "tracking"

urlpatterns = [
    path("o/<str:token>.gif", public(views_tracking.tracking_open), name="open"),
    path("c/<str:token>/<str:link>/", public(views_tracking.tracking_click), name="click"),
]
