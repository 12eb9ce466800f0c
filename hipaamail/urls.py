"""Root URLs: each app's urls.py, mounted. Deny by default (accounts.access): every page needs a verified staff
member unless it is marked public(...), signed_in(...) or a patient page, so each exception is visible in this file
or an app's urls.py."""
from django.contrib import admin
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path
from django.views.i18n import set_language
from django_otp.admin import OTPAdminSite

from accounts import urls as account_urls
from accounts.access import integration_patterns, patient_pages, public
from api import urls as api_urls
from audit import urls as audit_urls
from campaigns import urls as campaign_urls
from campaigns.views.campaigns import home
from consent import urls as consent_urls
from hipaamail import demo_outbox, health
from journeys import urls as journey_urls
from observability.views import metrics_view

# Defence in depth: the admin site itself also refuses a user who has not passed the second factor.
admin.site.__class__ = OTPAdminSite

# allauth's own limits (ACCOUNT_RATE_LIMITS) answer through this: the throttle page, with Retry-After.
handler429 = "accounts.throttle.allauth_throttled"
# 400, 403, 404 and 500 are Django's own handlers, which render templates/400.html, 403.html, 404.html and 500.html
# (the house style; the demo too, ADR 0028); hipaamail.error_pages gives 405 its page.
handler400 = "django.views.defaults.bad_request"
handler403 = "django.views.defaults.permission_denied"
handler404 = "django.views.defaults.page_not_found"
handler500 = "django.views.defaults.server_error"


def favicon(request):
    """/favicon.ico, which browsers and feed readers ask for whatever the page's <link rel="icon"> says: the
    static PNG-in-ICO, wherever the static files are served from (whitenoise in production, runserver in the demo)."""
    return redirect(static("favicon.ico"), permanent=True)

urlpatterns = [
    path("", home, name="home"),
    path("", include(account_urls)),
    path("campaigns/", include(campaign_urls)),
    path("consent/", include(consent_urls)),
    path("journeys/", include(journey_urls)),
    path("audit/", include(([*audit_urls.urlpatterns, *campaign_urls.audit_patterns], audit_urls.app_name))),
    path("reports/", include((campaign_urls.report_patterns, "reports"))),
    # Patient pages: no staff account; consent checks the patient's emailed one-time code itself.
    path("my/", include((patient_pages(consent_urls.portal_patterns), "portal"))),
    path("", include(campaign_urls.unsubscribe_patterns)),
    # The language switcher (POST with CSRF, issue 17): no data but the language chosen, kept in a cookie. The patient
    # pages post to portal:language instead, which also stores a signed-in patient's choice.
    path("i18n/setlang/", public(set_language), name="set_language"),
    # Provider webhooks and opt-in tracking: public views, each checks its own signature or signed token.
    path("webhooks/", include((campaign_urls.webhook_patterns, "webhooks"))),
    path("t/", include((campaign_urls.tracking_patterns, "tracking"))),
    # The integration API: each operation checks its API key and scope (api.auth); no session, no CSRF.
    path("api/v1/", include((integration_patterns(api_urls.api_patterns[0]), "ninja"), namespace="api-v1")),
    path("integrations/", include(api_urls)),
    path("admin/", admin.site.urls),
    path("favicon.ico", public(favicon), name="favicon"),
    # The demo's outbox (hipaamail.settings.local only; a 404 elsewhere): compliance officers and administrators.
    path("demo/outbox/", demo_outbox.outbox, name="demo_outbox"),
    path("demo/outbox/<str:key>/", demo_outbox.outbox_message, name="demo_outbox_message"),
    # Prometheus: no session; it checks its own bearer token (METRICS_TOKEN) and does not exist without one.
    path("metrics", public(metrics_view), name="metrics"),
    # Probes for load balancers and orchestrators: no sign-in, no data but which check is down (hipaamail/health.py).
    path("health/live", public(health.live), name="health-live"),
    path("health/ready", public(health.ready), name="health-ready"),
]
