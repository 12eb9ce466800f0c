"""The authorizations' standing, the live counts' summary (ADR 0021): written with the evidence by every service that
writes evidence, checked against it, rebuilt from it (R-SEND-COVERED: counts say what the predicate would decide;
R-AUTH-IMMUTABLE: the evidence itself is never touched)."""
import importlib
import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections
from django.utils import timezone

from audit import actions
from audit.models import AuditEvent
from conftest import requires_postgresql
from consent.models import AuthorizationDefect, AuthorizationStanding, Patient, Revocation
from consent.selectors.standing import authorization_standing_mismatch_counts
from consent.services.authorizations import (
    authorization_defect_record,
    authorization_grant,
    authorization_revoke,
    expiry_event_record,
)
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

CLEAN = {"standings": 0, "patients": 0}


def _every_kind_of_end():
    """Patients and authorizations in every state the services can write."""
    cpap, diabetes = purpose_make(), purpose_make()
    covered, revoked, defective, ended, twice = (patient_make() for _ in range(5))
    authorization_make(patient=covered, purpose=cpap)
    authorization_make(patient=covered, purpose=diabetes, signed_ago=timedelta(days=40), expires_in=-timedelta(days=1))
    authorization_make(patient=revoked, purpose=cpap)
    authorization_revoke(actor=None, patient_id=revoked.pk, purpose_id=cpap.pk, channel=Revocation.Channel.PORTAL)
    defect = authorization_make(patient=defective, purpose=cpap)
    for reason in (AuthorizationDefect.Reason.MISSING_ELEMENT, AuthorizationDefect.Reason.COMPOUND):
        authorization_defect_record(actor=None, authorization_id=defect.pk, reason=reason)
    on_event = authorization_grant(
        actor=None, patient=ended, purpose=cpap, expires_at=None, expiry_event="The CPAP machine is returned"
    )
    occurred = timezone.now() - timedelta(hours=2)
    expiry_event_record(actor=None, authorization_id=on_event.pk, occurred_at=occurred)
    first = authorization_make(patient=twice, purpose=cpap)
    authorization_defect_record(actor=None, authorization_id=first.pk, reason=AuthorizationDefect.Reason.CONDITIONED)
    authorization_revoke(actor=None, patient_id=twice.pk, purpose_id=cpap.pk, channel=Revocation.Channel.ONE_CLICK)
    return {
        "covered": covered,
        "revoked": revoked,
        "defect": defect,
        "on_event": on_event,
        "occurred": occurred,
        "first": first,
    }


def test_r_send_covered_every_service_that_writes_evidence_writes_the_standing_with_it():
    made = _every_kind_of_end()

    assert authorization_standing_mismatch_counts() == CLEAN
    assert AuthorizationStanding.objects.get(pk=made["defect"].pk).ended_by == AuthorizationDefect.Reason.COMPOUND
    assert AuthorizationStanding.objects.get(pk=made["on_event"].pk).expiry_event_at == made["occurred"]
    # Revoked after a defect: the revocation is the stronger end, as authorization_gap_list ranks them.
    assert AuthorizationStanding.objects.get(pk=made["first"].pk).ended_by == "revoked"
    assert Patient.objects.get(pk=made["covered"].pk).authorized_purposes == 2
    assert Patient.objects.get(pk=made["revoked"].pk).authorized_purposes == 1


def test_r_send_covered_the_check_finds_a_standing_or_a_count_that_left_its_evidence_and_the_rebuild_mends_it():
    made = _every_kind_of_end()
    AuthorizationStanding.objects.filter(pk=made["defect"].pk).update(ended_by="")
    AuthorizationStanding.objects.filter(pk=made["on_event"].pk).delete()
    Patient.objects.filter(pk=made["covered"].pk).update(authorized_purposes=0)

    assert authorization_standing_mismatch_counts() == {"standings": 2, "patients": 1}
    with pytest.raises(CommandError, match="2 standing"):
        call_command("authorization_standing", "--check")

    call_command("authorization_standing", "--rebuild")

    assert authorization_standing_mismatch_counts() == CLEAN
    call_command("authorization_standing", "--check")
    event = AuditEvent.objects.get(action=actions.STANDING_REBUILT)
    assert event.details == {"standings": AuthorizationStanding.objects.count(), "patients": Patient.objects.count()}


def test_r_send_covered_the_upgrade_writes_the_same_standing_as_the_services():
    """Migration 0010's own statements, run on evidence the services wrote, agree with the services."""
    _every_kind_of_end()
    migration = importlib.import_module("consent.migrations.0010_authorization_standing")
    AuthorizationStanding.objects.all().delete()
    Patient.objects.update(authorized_purposes=0)
    assert authorization_standing_mismatch_counts() != CLEAN

    with connection.cursor() as cursor:
        cursor.execute(migration.STANDINGS_FROM_EVIDENCE)
        cursor.execute(migration.PURPOSES_FROM_EVIDENCE)

    assert authorization_standing_mismatch_counts() == CLEAN


@requires_postgresql
@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_r_send_covered_grants_racing_for_one_patient_count_each_purpose_once():
    """Two signatures of one patient at the same moment, for two purposes and then for one: the patient's row
    lock makes each grant count the purposes the other committed."""
    patient = patient_make()
    purposes = [purpose_make() for _ in range(3)]
    barrier = threading.Barrier(2)

    def grant(purpose):
        try:
            barrier.wait(5)
            authorization_make(patient=Patient.objects.get(pk=patient.pk), purpose=purpose)
        finally:
            connections.close_all()

    for pair in ([purposes[0], purposes[1]], [purposes[2], purposes[2]]):
        threads = [threading.Thread(target=grant, args=(purpose,)) for purpose in pair]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)

    assert Patient.objects.get(pk=patient.pk).authorized_purposes == 3
    assert authorization_standing_mismatch_counts() == CLEAN


def test_r_no_phi_leak_the_nightly_check_logs_a_difference_with_counts_only(settings, caplog):
    from consent.periodic import authorization_standing_check_task

    made = _every_kind_of_end()
    assert "check-authorization-standing" in settings.CELERY_BEAT_SCHEDULE
    assert authorization_standing_check_task() == CLEAN
    assert not [record for record in caplog.records if record.levelname == "ERROR"]

    AuthorizationStanding.objects.filter(pk=made["defect"].pk).update(ended_by="")
    assert authorization_standing_check_task() == {"standings": 1, "patients": 0}

    (error,) = [record for record in caplog.records if record.levelname == "ERROR"]
    assert error.getMessage() == (
        "the live counts' summary differs from the evidence: 1 standing(s), 0 patient count(s); "
        "run manage.py authorization_standing --rebuild"
    )  # counts only: no authorization or patient id


def test_r_revoke_anytime_a_revocation_never_fails_for_want_of_the_summary():
    """Authorizations loaded past the services (a bulk load before its rebuild) have no standing: revoking one,
    recording its defect or its expiry event still works, and writes its standing from the evidence."""
    purpose = purpose_make()
    revoked, defective = patient_make(), patient_make()
    first = authorization_make(patient=revoked, purpose=purpose)
    second = authorization_make(patient=defective, purpose=purpose)
    AuthorizationStanding.objects.all().delete()

    authorization_revoke(actor=None, patient_id=revoked.pk, purpose_id=purpose.pk, channel=Revocation.Channel.PORTAL)
    authorization_defect_record(actor=None, authorization_id=second.pk, reason=AuthorizationDefect.Reason.COMPOUND)

    assert AuthorizationStanding.objects.get(pk=first.pk).ended_by == "revoked"
    assert AuthorizationStanding.objects.get(pk=second.pk).ended_by == AuthorizationDefect.Reason.COMPOUND
    assert authorization_standing_mismatch_counts() == CLEAN
