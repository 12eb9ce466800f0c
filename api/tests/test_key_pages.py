"""Administrators create API keys in the browser after the second factor: the secret is shown once and stored
hashed; keys can be revoked; last use is shown. Anyone else gets a 404."""
import hashlib
import re

import pytest

from api.models import ApiKey
from api.scopes import PATIENTS_WRITE, PURPOSES_READ
from audit import actions
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("role", ["marketer", "compliance officer"])
def test_only_administrators_reach_the_key_pages(verified_client, role):
    verified_client.sign_in(role)
    assert verified_client.get("/integrations/keys/").status_code == 404
    assert verified_client.get("/integrations/keys/new/").status_code == 404


def test_an_unverified_administrator_is_sent_to_the_second_factor(client, admin_user):
    client.force_login(admin_user)
    response = client.get("/integrations/keys/")
    assert response.status_code == 302
    assert response["Location"] == "/account/two-factor/?next=/integrations/keys/"


def test_create_shows_the_secret_once_and_stores_only_its_hash(verified_client):
    verified_client.sign_in("administrator")
    response = verified_client.post(
        "/integrations/keys/new/",
        {"name": "Epic nightly sync", "source": "epic", "scopes": [PATIENTS_WRITE, PURPOSES_READ],
         "rate_limit_per_minute": 600},
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    token = re.search(r'value="(hm_[0-9a-f]{8}_[A-Za-z0-9_\-]+)"', response.content.decode()).group(1)
    key = ApiKey.objects.get()
    assert key.scopes == [PATIENTS_WRITE, PURPOSES_READ] and key.source == "epic"
    secret = token.split("_", 2)[2]
    assert key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(ApiKey.objects.values().get())
    listing = verified_client.get("/integrations/keys/").content.decode()
    assert "Epic nightly sync" in listing and secret not in listing and "Not yet" in listing
    assert AuditEvent.objects.filter(action=actions.API_KEY_CREATED, object_id=str(key.pk)).exists()
    # The key works, and its last use shows.
    verified_client.get("/api/v1/purposes", headers={"Authorization": f"Bearer {token}"})
    assert "Not yet" not in verified_client.get("/integrations/keys/").content.decode()


def test_create_refuses_a_key_without_scopes_or_with_a_past_expiry(verified_client):
    verified_client.sign_in("administrator")
    response = verified_client.post(
        "/integrations/keys/new/", {"name": "CRM", "expires_on": "2001-01-01", "rate_limit_per_minute": 600}
    )
    html = response.content.decode()
    assert response.status_code == 200 and "This field is required" in html and "Choose today or a later day" in html
    assert not ApiKey.objects.exists()


def test_revoke_refuses_the_next_call(verified_client, make_key):
    verified_client.sign_in("administrator")
    key, token = make_key([PURPOSES_READ])
    auth = {"Authorization": f"Bearer {token}"}
    assert verified_client.get("/api/v1/purposes", headers=auth).status_code == 200
    response = verified_client.post(f"/integrations/keys/{key.pk}/revoke/")
    assert response.status_code == 302
    assert verified_client.get("/api/v1/purposes", headers=auth).status_code == 401
    assert "Revoked" in verified_client.get("/integrations/keys/").content.decode()
    assert AuditEvent.objects.filter(action=actions.API_KEY_REVOKED, object_id=str(key.pk)).count() == 1
