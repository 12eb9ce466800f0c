"""The portal under abuse (issue 16): code requests, code entry and the signing pages are throttled per client
address and per account (the address typed, the patient, the invitation), with 429, Retry-After and a plain page;
the same limits whether or not an address is a patient's. R-NO-PHI-LEAK: nothing of the patient in the page."""
import re

import pytest
from django.core import mail

from consent.models import Authorization
from consent.services import signing
from consent.tests.factories import form_published_make, patient_make, purpose_make

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_throttle_and_media")]


@pytest.fixture
def throttling(settings, monkeypatch):
    """Throttling on, its clock held a second into a window (1,800,000,000 is a multiple of every window here)."""
    settings.HIPAAMAIL_THROTTLE_ENABLED = True
    monkeypatch.setattr("accounts.throttle.time.time", lambda: 1_800_000_001.0)

    def rules(**scopes):
        settings.HIPAAMAIL_THROTTLES = {**settings.HIPAAMAIL_THROTTLES, **scopes}

    return rules


def _code_request(client, email, address="198.51.100.20"):
    return client.post("/my/sign-in/", {"email": email}, REMOTE_ADDR=address)


def test_code_requests_are_throttled_per_address_typed_whoever_it_belongs_to(client, throttling):
    throttling(portal_code_request="100/m/ip,2/15m/key")
    patient = patient_make(email="ana.lopez@example.org")

    for_patient = [_code_request(client, "Ana.Lopez@example.org", f"198.51.100.{n}") for n in range(1, 4)]
    for_stranger = [_code_request(client, "nobody@example.org", f"198.51.100.{n}") for n in range(1, 4)]

    assert [r.status_code for r in for_patient] == [r.status_code for r in for_stranger] == [302, 302, 429]
    assert for_patient[-1]["Retry-After"] == for_stranger[-1]["Retry-After"] == "899"
    assert for_patient[-1].content == for_stranger[-1].content  # who is a patient stays private
    page = for_patient[-1].content.decode()
    assert "Please wait 15 minutes, then try again." in page
    assert patient.email not in page and "ana.lopez" not in page.lower()
    assert len(mail.outbox) == 2  # the refused request sent nothing


def test_code_requests_are_throttled_per_client_address(client, throttling):
    throttling(portal_code_request="3/m/ip,100/15m/key")

    answers = [_code_request(client, f"person{n}@example.org") for n in range(4)]
    elsewhere = _code_request(client, "person9@example.org", address="203.0.113.9")

    assert [r.status_code for r in answers] == [302, 302, 302, 429]
    assert answers[-1]["Retry-After"] == "59"
    assert elsewhere.status_code == 302


def test_code_entry_is_throttled_per_account_across_sessions_and_addresses(client, throttling):
    """A fresh session for each guess does not help: the account the code was asked for is counted."""
    throttling(portal_code_entry="100/m/ip,3/15m/key")
    patient = patient_make()
    answers = []
    for n in range(1, 5):
        client.cookies.clear()
        _code_request(client, patient.email, f"198.51.100.{n}")
        answers.append(client.post("/my/code/", {"code": "000000"}, REMOTE_ADDR=f"198.51.100.{n}"))

    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert answers[-1]["Retry-After"] == "899"
    # The right code waits for the window too.
    right = re.search(r"Your code is: (\d{6})", mail.outbox[-1].body).group(1)
    assert client.post("/my/code/", {"code": right}, REMOTE_ADDR="198.51.100.4").status_code == 429
    assert client.get("/my/").status_code == 302


def test_code_entry_is_throttled_per_client_address(client, throttling):
    throttling(portal_code_entry="2/m/ip,100/15m/key")
    _code_request(client, "someone@example.org")

    answers = [client.post("/my/code/", {"code": "000000"}, REMOTE_ADDR="198.51.100.20") for _ in range(3)]

    assert [r.status_code for r in answers] == [200, 200, 429]
    assert answers[-1]["Retry-After"] == "59"


def test_invitation_links_are_throttled_per_address_and_per_link(client, throttling):
    throttling(signing="3/m/ip,2/m/key")
    patient = patient_make()
    purpose = purpose_make()
    form_published_make(purpose)
    _, token = signing.invitation_create(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="email")

    same_link = [client.get(f"/my/invite/{token}/", REMOTE_ADDR=f"198.51.100.{n}") for n in range(1, 4)]
    forged = [client.get(f"/my/invite/forged{n}/", REMOTE_ADDR="203.0.113.30") for n in range(4)]

    assert [r.status_code for r in same_link] == [200, 200, 429]
    assert [r.status_code for r in forged] == [404, 404, 404, 429]
    assert forged[-1]["Retry-After"] == "59"


def test_signing_is_throttled_per_patient(client, throttling):
    throttling(signing="100/m/ip,2/m/key")
    patient = patient_make()
    purpose = purpose_make()
    form_published_make(purpose)
    _code_request(client, patient.email)
    code = re.search(r"Your code is: (\d{6})", mail.outbox[-1].body).group(1)
    assert client.post("/my/code/", {"code": code}).status_code == 302

    # Incomplete forms (no intent): each is an attempt all the same.
    answers = [
        client.post(f"/my/sign/{purpose.pk}/", {"signature_name": "Pat", "signer": "patient"},
                    REMOTE_ADDR=f"198.51.100.{n}")
        for n in range(1, 4)
    ]

    assert [r.status_code for r in answers] == [400, 400, 429]
    assert answers[-1]["Retry-After"] == "59"
    assert not Authorization.objects.filter(patient=patient).exists()
    assert client.get(f"/my/sign/{purpose.pk}/").status_code == 200  # reading the form is not throttled
