"""Mail provider webhooks (bounces, complaints), mounted at /webhooks/. Each view is public() and checks the
provider's own credentials (django-anymail's basic auth against ANYMAIL["WEBHOOK_SECRET"])."""
from django.urls import path

from campaigns import views_webhooks
from hipaamail.access import public

app_name = "webhooks"

urlpatterns = [
    # Amazon SES events through an SNS subscription to https://user:password@host/webhooks/amazon-ses/tracking/
    path("amazon-ses/tracking/", public(views_webhooks.amazon_ses_tracking), name="amazon_ses_tracking"),
]
