"""Fixtures of the integration API's tests: keys with chosen scopes, and a client that sends one."""
import json
import uuid

import pytest
from django.core.cache import cache

from accounts.tests.factories import staff_make
from api.keys import api_key_create
from api.scopes import SCOPES


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def admin_user(db):
    return staff_make(role="administrator", with_totp=True)


@pytest.fixture
def make_key(admin_user):
    """make_key(scopes) -> (ApiKey, token). All scopes when none are named."""

    def make(scopes=None, **options):
        issued = api_key_create(actor=admin_user, name="EHR nightly sync", scopes=list(scopes or SCOPES), **options)
        return issued.key, issued.token

    return make


class ApiClient:
    """The Django test client with a bearer token, JSON bodies and a fresh Idempotency-Key per POST."""

    def __init__(self, client, token: str):
        self.client, self.token = client, token

    def _headers(self, extra):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers.update(extra or {})
        return headers

    def get(self, path: str, headers=None, **params):
        return self.client.get(path, params, headers=self._headers(headers))

    def post(self, path: str, body=None, *, idempotency_key: str | None = "", headers=None, raw: bytes | None = None):
        extra = dict(headers or {})
        if idempotency_key == "":
            idempotency_key = uuid.uuid4().hex
        if idempotency_key is not None:
            extra["Idempotency-Key"] = idempotency_key
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(path, data, content_type="application/json", headers=self._headers(extra))


@pytest.fixture
def api_client(client, make_key):
    """api_client(scopes=None) -> ApiClient with a new key holding those scopes (all when None)."""

    def make(scopes=None, **options):
        key, token = make_key(scopes, **options)
        api = ApiClient(client, token)
        api.key = key
        return api

    return make


@pytest.fixture
def api_data(db):
    """A little of everything the API reads, so that fuzzed ids sometimes hit a row: patients 1..3 with
    authorizations, a purpose with a published form, a campaign with deliveries."""
    from campaigns.models import Delivery
    from campaigns.tests.factories import campaign_make
    from consent.tests.factories import authorization_make, form_published_make, patient_make, purpose_make

    purpose = purpose_make(code="cpap-supplies")
    form_published_make(purpose)
    patients = [patient_make() for _ in range(3)]
    for patient in patients:
        authorization_make(patient=patient, purpose=purpose)
    campaign = campaign_make(purpose=purpose)
    Delivery.objects.bulk_create(Delivery(campaign=campaign, patient=patient) for patient in patients)
    return {"purpose": purpose, "patients": patients, "campaign": campaign}
