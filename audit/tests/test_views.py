"""The audit pages: who may read them (R-MIN-NECESSARY), the filters, keyset pagination,
what viewing them records (R-SEC-AUDIT), and the chain status they show (R-SEC-INTEGRITY)."""
import importlib
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent
from audit.permissions import AUDIT_READERS
from audit.services import audit_record, audit_seal
from conftest import requires_postgresql

pytestmark = pytest.mark.django_db


def _event(action="fhir.imported", **fields) -> AuditEvent:
    return audit_record(actor=fields.pop("actor", None), actor_role=fields.pop("actor_role", "system"),
                        action=action, **fields)


def _shown_actions(response) -> list[str]:
    return re.findall(r'<li class="event" data-action="([^"]+)"', response.content.decode())


def _shown_ids(response) -> list[int]:
    """The object ids of the rows shown, in page order (each test event names its own object id)."""
    return [int(n) for n in re.findall(r"thing #(\d+)", response.content.decode())]


def test_the_audit_roles_are_hipaamail_roles():
    """The audit app may not import accounts.roles (lint-imports); its copy of the names must not drift."""
    roles = importlib.import_module("accounts.roles")

    assert set(AUDIT_READERS) == {roles.COMPLIANCE_OFFICER, roles.ADMINISTRATOR}


@pytest.mark.parametrize("url", ["/audit/", "/audit/patients/5/"])
def test_r_min_necessary_marketers_get_404_on_audit_pages(verified_client, url):
    _event(patient_id=5)
    verified_client.sign_in(role="marketer")

    response = verified_client.get(url)

    assert response.status_code == 404
    assert not AuditEvent.objects.filter(action__startswith="audit.").exists()


def test_anonymous_visitors_are_sent_to_sign_in(client):
    response = client.get("/audit/")

    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("role", ["compliance officer", "administrator"])
def test_compliance_officers_and_administrators_read_the_log(verified_client, role):
    _event("campaign.approved", object_type="campaign", object_id=7)
    verified_client.sign_in(role=role)

    response = verified_client.get("/audit/")

    assert response.status_code == 200
    assert _shown_actions(response) == ["campaign.approved"]
    assert b'href="/campaigns/7/"' in response.content


@pytest.fixture
def officer(verified_client):
    verified_client.sign_in(role="compliance officer")
    return verified_client


def test_each_filter_narrows_the_log(officer):
    someone = get_user_model().objects.create_user(username="someone", email="someone@riverside-health.example")
    _event("campaign.updated", actor=someone, object_type="campaign", object_id=3)
    _event("campaign.updated", object_type="campaign", object_id=4)
    _event("patient.viewed", object_type="patient", object_id=8, patient_id=8)
    _event("authorization.granted", object_type="authorization", object_id=1, patient_id=8)
    _event("patient.viewed", object_type="patient", object_id=9, patient_id=9)

    assert _shown_actions(officer.get(f"/audit/?actor={someone.pk}")) == ["campaign.updated"]
    assert _shown_actions(officer.get("/audit/?action=patient.viewed")) == ["patient.viewed", "patient.viewed"]
    assert _shown_actions(officer.get("/audit/?patient=8")) == ["authorization.granted", "patient.viewed"]
    assert _shown_actions(officer.get("/audit/?campaign=4")) == ["campaign.updated"]
    assert _shown_actions(officer.get("/audit/?action=campaign.updated&campaign=3")) == ["campaign.updated"]


def test_the_date_range_includes_both_days(officer):
    today = timezone.localdate()
    _event("campaign.resumed")

    assert _shown_actions(officer.get(f"/audit/?start={today}&end={today}")) == ["campaign.resumed"]
    assert _shown_actions(officer.get(f"/audit/?end={today - timedelta(days=1)}")) == []
    assert _shown_actions(officer.get(f"/audit/?start={today + timedelta(days=1)}")) == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("patient=abc", "Enter a whole number."),
        ("patient=-4", "Ensure this value is greater than or equal to 1."),
        ("start=2026-13-40", "Enter a valid date."),
        ("start=2026-05-02&end=2026-05-01", "The start date is after the end date."),
        ("action=no.such.action", "Select a valid choice."),
        ("actor=999999", "Select a valid choice."),
        ("before=xyz&after=-1", None),
    ],
)
def test_bad_filter_input_is_explained_not_a_server_error(officer, query, message):
    _event("fhir.imported")

    response = officer.get(f"/audit/?{query}")

    assert response.status_code == 200
    if message:
        assert message in response.content.decode()
    assert _shown_actions(response) == ["fhir.imported"]  # the invalid filter is not applied


def test_keyset_pagination_walks_older_and_back(officer):
    for n in range(1, 121):
        _event("fhir.imported", object_type="thing", object_id=n)

    first = officer.get("/audit/")
    assert _shown_ids(first) == list(range(120, 70, -1))
    older = re.search(r'href="\?before=(\d+)" rel="next"', first.content.decode()).group(1)
    second = officer.get(f"/audit/?before={older}")
    assert _shown_ids(second) == list(range(70, 20, -1))
    last = officer.get("/audit/?before=" + re.search(r'before=(\d+)" rel="next"', second.content.decode()).group(1))
    assert _shown_ids(last) == list(range(20, 0, -1))
    assert 'rel="next"' not in last.content.decode()
    newer = re.search(r'after=(\d+)" rel="prev"', last.content.decode()).group(1)
    assert _shown_ids(officer.get(f"/audit/?after={newer}")) == list(range(70, 20, -1))


def test_pagination_keeps_the_filters(officer):
    for n in range(1, 61):
        _event("campaign.paused" if n % 2 else "mfa.device_removed", object_type="thing", object_id=n)

    first = officer.get("/audit/?action=campaign.paused").content.decode()
    link = re.search(r'href="\?([^"]+)" rel="next"', first)
    assert link is None  # 30 events: one page
    for n in range(61, 181):
        _event("campaign.paused", object_type="thing", object_id=n)
    page = officer.get("/audit/?action=campaign.paused").content.decode()
    query = re.search(r'href="\?([^"]+)" rel="next"', page).group(1).replace("&amp;", "&")
    assert query.startswith("action=campaign.paused&before=")
    assert set(_shown_actions(officer.get(f"/audit/?{query}"))) == {"campaign.paused"}


def test_r_sec_audit_filtering_the_log_by_patient_is_recorded_browsing_is_not(officer):
    _event("patient.viewed", patient_id=12)

    officer.get("/audit/")
    officer.get("/audit/?action=patient.viewed")
    assert not AuditEvent.objects.filter(action__startswith="audit.").exists()

    officer.get("/audit/?patient=12&action=patient.viewed")
    viewed = AuditEvent.objects.get(action="audit.log_viewed")
    assert (viewed.patient_id, viewed.details) == (12, {"filtered_by": ["action", "patient_id"]})


def test_r_sec_integrity_the_page_shows_the_chain_status(officer, settings):
    settings.AUDIT_CHECKPOINT_KEYS = "test-only-audit-checkpoint-key-0123456789abcdef"
    _event("fhir.imported")
    page = officer.get("/audit/").content.decode()
    assert "Last verified:" in page and "never" in page and "none yet" in page

    call_command("audit_checkpoint")
    call_command("audit_verify")
    page = officer.get("/audit/").content.decode()

    assert re.search(r"intact through sequence 2\b", page)  # the event and the checkpoint's (the verify's came after)
    assert "at sequence 1" in page


@requires_postgresql
def test_r_sec_integrity_the_page_shows_a_broken_chain(officer):
    for _ in range(3):
        _event("fhir.imported")
    audit_seal()
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("UPDATE audit_auditevent SET action = 'x' WHERE sequence = 2")
        cursor.execute("SET session_replication_role = origin")
    with pytest.raises(Exception, match="sequence 2"):
        call_command("audit_verify")

    page = officer.get("/audit/").content.decode()

    assert "broken at sequence 2" in page
