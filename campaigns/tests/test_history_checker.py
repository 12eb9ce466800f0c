"""The history checker can fail (campaigns.tests.history.history_check; R-SEND-COVERED, R-REVOKE-ANYTIME,
R-SEND-EVIDENCE): a clean hand-made history passes, and each doctored one is reported under its rule.

Pure: no database, no worker, no SMTP server; it runs with the history suite (make test-history) in milliseconds.
"""
import dataclasses

import pytest

from campaigns.tests.history import (
    AuthorizationRow,
    CampaignRow,
    DeliveryRow,
    ExpiryEventCall,
    History,
    Received,
    RevocationCall,
    history_check,
    history_report,
)

pytestmark = [pytest.mark.history]

T = 1_800_000_000.0  # an instant; everything below is seconds after it
WINDOW = 0.5
PURPOSE = 7


def _delivery(pk: int, patient: int, authorization: int, *, checked: float, sent: float, **changes) -> DeliveryRow:
    row = DeliveryRow(
        id=pk, campaign_id=1, patient_id=patient, purpose_id=PURPOSE, address=f"p{patient}@example.org",
        status="sent", block_reason="", authorization_id=authorization, message_id=f"<delivery-{pk}@x>",
        expected_message_id=f"<delivery-{pk}@x>", checked_at=T + checked, sent_at=T + sent, lease_expires_at=None,
        possible_duplicate=False,
    )  # fmt: skip
    return dataclasses.replace(row, **changes)


def _clean() -> History:
    """Three patients of one campaign. Patient 1: sent at 0.10 under a lasting authorization. Patient 2: sent at
    0.20, then revoked through the portal (called 0.30, returned 0.35). Patient 3: authorization expiring at 1.0,
    delivery blocked "expired" after the check at 0.9 (it would not last the window)."""
    return History(
        window=WINDOW,
        received=[
            Received("<delivery-11@x>", "p1@example.org", T + 0.08),
            Received("<delivery-12@x>", "p2@example.org", T + 0.18),
        ],
        deliveries=[
            _delivery(11, 1, 101, checked=0.05, sent=0.10),
            _delivery(12, 2, 102, checked=0.05, sent=0.20),
            _delivery(
                13, 3, 103, checked=0.9, sent=0.9, status="blocked", block_reason="expired",
                authorization_id=None, message_id="", checked_at=None, sent_at=None,
            ),
        ],
        authorizations=[
            AuthorizationRow(101, 1, PURPOSE, signed_at=T - 86400, expires_at=T + 86400 * 365),
            AuthorizationRow(102, 2, PURPOSE, signed_at=T - 86400, expires_at=T + 86400 * 365, revoked_at=T + 0.33),
            AuthorizationRow(103, 3, PURPOSE, signed_at=T - 86400, expires_at=T + 1.0),
        ],
        campaigns=[CampaignRow(1, PURPOSE, "sent", finished=True)],
        revocations=[RevocationCall("portal", 2, PURPOSE, before=T + 0.30, after=T + 0.35, revoked=(102,))],
    )


def _rules(history: History) -> set[str]:
    return {violation.rule for violation in history_check(history)}


def test_r_send_covered_a_clean_history_has_no_violation():
    history = _clean()
    assert history_check(history) == [], history_report(history, history_check(history))


def test_r_revoke_anytime_a_message_received_after_the_revocation_returned_is_reported():
    """A second campaign's message for patient 2 (same purpose) arrives after the portal revocation returned."""
    history = _clean()
    history.deliveries.append(_delivery(14, 2, 102, checked=0.31, sent=0.40, campaign_id=2))
    history.received.append(Received("<delivery-14@x>", "p2@example.org", T + 0.38))
    history.campaigns.append(CampaignRow(2, PURPOSE, "sent", finished=True))
    violations = history_check(history)
    assert any(v.rule == "revoked" and "delivery 14" in v.detail and "portal" in v.detail for v in violations)
    # The evidence rule sees it too: it names an authorization revoked (0.33) before its sent_at (0.40).
    assert any(v.rule == "evidence" and "delivery 14" in v.detail and "revoked" in v.detail for v in violations)


def test_r_revoke_anytime_a_message_received_after_the_database_stamped_the_revocation_is_reported():
    """Received at 0.34: before the call returned (0.35), but after the revocation's row was stamped (0.33)."""
    history = _clean()
    history.deliveries.append(_delivery(14, 2, 102, checked=0.31, sent=0.345, campaign_id=2))
    history.received.append(Received("<delivery-14@x>", "p2@example.org", T + 0.34))
    history.campaigns.append(CampaignRow(2, PURPOSE, "sent", finished=True))
    assert any(v.rule == "revoked" and "stamped" in v.detail for v in history_check(history))


def test_r_send_covered_a_message_received_at_or_after_its_expiry_is_reported():
    """Patient 3's delivery sent after all: its message arrives at 1.0, exactly when its authorization expires."""
    history = _clean()
    history.deliveries[2] = _delivery(13, 3, 103, checked=0.6, sent=1.05)
    history.received.append(Received("<delivery-13@x>", "p3@example.org", T + 1.0))
    violations = history_check(history)
    assert any(v.rule == "expired" and "delivery 13" in v.detail for v in violations)
    assert any(v.rule == "evidence" and "delivery 13" in v.detail and "expired" in v.detail for v in violations)


def test_r_send_covered_a_message_after_an_expiry_event_is_reported_but_not_before_it_was_recorded():
    """An event occurring at 0.5, recorded (returned) at 0.2: a message at 0.6 is reported. The same event
    recorded late (returned at 0.7): the message at 0.6 could not have known it, and is not."""
    history = _clean()
    history.authorizations[0] = dataclasses.replace(
        history.authorizations[0], expires_at=None, event_occurred_at=T + 0.5, event_recorded_at=T + 0.15
    )
    history.expiry_events.append(ExpiryEventCall(101, T + 0.5, before=T + 0.1, after=T + 0.2))
    history.deliveries.append(_delivery(14, 1, 101, checked=0.45, sent=0.62, campaign_id=2))
    history.received.append(Received("<delivery-14@x>", "p1@example.org", T + 0.6))
    history.campaigns.append(CampaignRow(2, PURPOSE, "sent", finished=True))
    assert any(v.rule == "expired" and "delivery 14" in v.detail for v in history_check(history))

    late = dataclasses.replace(history, expiry_events=[ExpiryEventCall(101, T + 0.5, before=T + 0.1, after=T + 0.7)])
    late.authorizations = [dataclasses.replace(history.authorizations[0], event_recorded_at=T + 0.65)] + history.authorizations[1:]
    assert "expired" not in _rules(late)
    assert "evidence" not in _rules(late)


def test_r_send_evidence_an_unflagged_duplicate_is_reported_and_a_flagged_one_is_not():
    history = _clean()
    history.received.append(Received("<delivery-11@x>", "p1@example.org", T + 0.09))
    assert any(v.rule == "unflagged-duplicate" and "delivery 11" in v.detail for v in history_check(history))
    history.deliveries[0] = dataclasses.replace(history.deliveries[0], possible_duplicate=True)
    assert history_check(history) == []


def test_r_send_evidence_a_queued_leftover_and_an_unfinished_campaign_are_reported():
    history = _clean()
    history.deliveries.append(
        _delivery(
            15, 4, 104, checked=0, sent=0, status="queued", authorization_id=None, message_id="",
            checked_at=None, sent_at=None, lease_expires_at=T + 2,
        )
    )
    history.campaigns[0] = CampaignRow(1, PURPOSE, "sending", finished=False)
    violations = history_check(history)
    assert any(v.rule == "not-terminal" and "delivery 15 is still queued" in v.detail for v in violations)
    assert any(v.rule == "not-terminal" and "still leased" in v.detail for v in violations)
    assert any(v.rule == "unfinished" and "campaign 1" in v.detail for v in violations)


def test_r_send_evidence_lost_unknown_and_misaddressed_messages_are_reported():
    history = _clean()
    history.received = [r for r in history.received if r.message_id != "<delivery-12@x>"]  # sent, never received
    history.received.append(Received("<delivery-99@x>", "p9@example.org", T + 0.5))  # no such delivery
    history.received.append(Received("<delivery-13@x>", "p3@example.org", T + 0.5))  # blocked, not flagged
    history.received[0] = dataclasses.replace(history.received[0], recipient="someone.else@example.org")
    violations = history_check(history)
    assert any(v.rule == "lost" and "delivery 12" in v.detail for v in violations)
    assert any(v.rule == "unknown-message" and "delivery-99" in v.detail for v in violations)
    assert any(v.rule == "unknown-message" and "delivery 13 is blocked" in v.detail for v in violations)
    assert any(v.rule == "misaddressed" and "delivery 11" in v.detail for v in violations)


def test_r_send_covered_a_send_outside_its_check_to_send_window_is_reported():
    history = _clean()
    history.deliveries[0] = _delivery(11, 1, 101, checked=0.05, sent=0.05 + WINDOW + 0.01)
    violations = history_check(history)
    assert any(v.rule == "window" and "delivery 11" in v.detail and "more than" in v.detail for v in violations)
    history.deliveries[0] = _delivery(11, 1, 101, checked=0.2, sent=0.1)
    assert any(v.rule == "window" and "before its check" in v.detail for v in history_check(history))


def test_r_send_covered_a_250_after_the_window_is_reported_whatever_sent_at_says():
    """The sender recorded sent_at 0.10, inside the window; the server's own clock says it answered 250 at 0.60."""
    history = _clean()
    history.received[0] = dataclasses.replace(history.received[0], answered_at=T + 0.05 + WINDOW + 0.05)
    assert any(v.rule == "window" and "answered 250" in v.detail for v in history_check(history))
    history.received[0] = dataclasses.replace(history.received[0], answered_at=T + 0.09)
    assert history_check(history) == []


def test_r_send_evidence_a_check_that_no_received_copy_followed_is_reported():
    """checked_at 0.09 is after the only copy reached the server (0.08): that check did not let it go."""
    history = _clean()
    history.deliveries[0] = _delivery(11, 1, 101, checked=0.09, sent=0.10)
    assert any(v.rule == "evidence" and "no copy reached the server" in v.detail for v in history_check(history))


def test_a_failed_action_of_the_run_is_reported():
    history = _clean()
    history.errors.append("portal revocation of patient 2 purpose 7: OperationalError('server closed')")
    assert _rules(history) == {"harness"}
