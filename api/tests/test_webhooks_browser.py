"""An administrator adds a webhook in Chromium, under the strict Content-Security-Policy (the browser fixtures fail
the test on any violation): the form's event checkboxes, the secret shown once, the list, the delivery log, delete."""
import pytest
from django.urls import reverse

from accounts.tests.factories import staff_make
from api.keys import api_key_create
from api.models import WebhookSubscription
from api.scopes import SCOPES
from conftest import browser_sign_in, screenshot
from consent import crypto

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_administrator_adds_a_webhook_and_reads_its_log_in_chromium(page, live_server):
    admin = staff_make(role="administrator", email="admin@demo.hipaamail.test", with_totp=True)
    key = api_key_create(actor=admin, name="CRM", scopes=list(SCOPES)).key
    browser_sign_in(page, live_server, admin, start="/accounts/login/")

    page.goto(f"{live_server.url}{reverse('integrations:webhook_list', args=[key.pk])}")
    assert "No webhooks for this key yet." in page.content()
    page.get_by_role("link", name="Add a webhook").click()
    page.fill("input[name=url]", "https://crm.example.org/hooks/hipaamail")
    page.check("input[name=event_types][value='authorization.revoked']")
    page.check("input[name=event_types][value='suppression.added']")
    screenshot(page, "webhook-form")
    page.get_by_role("button", name="Add the webhook").click()

    secret = page.input_value("#secret")
    subscription = WebhookSubscription.objects.get()
    assert secret.startswith("whsec_") and crypto.decrypt(subscription.secret) == secret
    screenshot(page, "webhook-created")
    page.get_by_role("link", name="Done").click()
    assert "https://crm.example.org/hooks/hipaamail" in page.content() and secret not in page.content()

    page.get_by_role("link", name="Delivery log").click()
    assert "Nothing sent to this receiver yet." in page.content()
    page.get_by_role("link", name="Webhooks of CRM").click()
    page.get_by_role("button", name="Delete the webhook to https://crm.example.org/hooks/hipaamail").click()
    page.wait_for_url(f"**{reverse('integrations:webhook_list', args=[key.pk])}")
    assert "is deleted" in page.content()
    assert WebhookSubscription.objects.count() == 0
