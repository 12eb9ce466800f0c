"""The reads other apps use: streaming events by filters (the reports' CSV), the chain head (what a report
cites), the chain status (the audit pages)."""
from datetime import timedelta

import pytest
from django.utils import timezone

from audit import chain, selectors
from audit.selectors import AuditFilters
from audit.services import audit_record, audit_seal

pytestmark = pytest.mark.django_db


def _event(action: str, **fields):
    return audit_record(actor=None, actor_role="system", action=action, **fields)


def test_event_iteration_streams_the_matching_events_oldest_first():
    first = _event("campaign.updated", object_type="campaign", object_id=3)
    _event("campaign.updated", object_type="campaign", object_id=4)
    _event("patient.viewed", object_type="patient", object_id=8, patient_id=8)
    last = _event("campaign.approved", object_type="campaign", object_id=3)

    streamed = list(selectors.audit_event_iter(AuditFilters(campaign_id=3), chunk_size=1))

    assert [event.pk for event in streamed] == [first.pk, last.pk]
    assert [e.action for e in selectors.audit_event_iter(AuditFilters(patient_id=8))] == ["patient.viewed"]
    today = timezone.localdate()
    assert len(list(selectors.audit_event_iter(AuditFilters(start=today, end=today)))) == 4
    assert list(selectors.audit_event_iter(AuditFilters(end=today - timedelta(days=1)))) == []


def test_the_chain_head_is_the_newest_sealed_event():
    assert selectors.audit_chain_head() == selectors.ChainHead(sequence=0, hash=chain.GENESIS)
    _event("encryption.rotated")
    newest = _event("purpose.updated")
    assert selectors.audit_chain_head().sequence == 0  # not sealed yet: inside this test's transaction

    audit_seal()

    head = selectors.audit_chain_head()
    newest.refresh_from_db()
    assert (head.sequence, head.hash, head.event_id) == (2, newest.hash, newest.pk)


def test_the_chain_status_counts_what_waits_for_the_sealer():
    _event("encryption.rotated")
    _event("purpose.updated")

    status = selectors.audit_chain_status()

    assert (status.head.sequence, status.unsealed, status.last_verify, status.last_checkpoint) == (0, 2, None, None)
