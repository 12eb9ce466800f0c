"""Rewrite the authorizations' standing (the live counts', ADR 0021) from the evidence: after a restore of the
evidence alone, a bulk load that wrote authorizations past the services (bench/health_system_data.py), or a check
that found a difference (`manage.py authorization_standing --check`)."""
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce

from audit import actions
from audit.services import audit_record
from consent.models import Authorization, AuthorizationStanding, Patient
from consent.selectors.standing import authorization_standing_expected


def authorization_standing_rebuild(*, actor=None) -> dict[str, int]:
    """Every standing written again from the evidence, and every patient's count of authorized purposes, in one
    transaction (the counts never see half of it). Returns {"standings": rows written, "patients": rows updated}.
    The tables are locked against writers for the while: a grant or a revocation waits for it."""
    with transaction.atomic(durable=True):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                # Writers wait rather than write a standing this would then overwrite; readers go on.
                cursor.execute("LOCK TABLE consent_authorizationstanding, consent_patient IN SHARE ROW EXCLUSIVE MODE")
        AuthorizationStanding.objects.all().delete()
        select_sql, params = (
            authorization_standing_expected()
            .order_by()
            # Model fields first, then the annotations in the order they were made: the INSERT's column order.
            .values("pk", "patient_id", "purpose_id", "signed_at", "expires_at", "expected_event_at", "expected_ended_by")
            .query.sql_with_params()
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO consent_authorizationstanding (authorization_id, patient_id, purpose_id, signed_at, "
                f"expires_at, expiry_event_at, ended_by) {select_sql}",
                params,
            )
            standings = cursor.rowcount
        held = (
            Authorization.objects.filter(patient_id=OuterRef("pk"))
            .order_by()
            .values("patient_id")
            .annotate(n=Count("purpose_id", distinct=True))
            .values("n")
        )
        patients = Patient.objects.update(authorized_purposes=Coalesce(Subquery(held), 0))
        audit_record(
            actor=actor,
            actor_role="" if actor else actions.SYSTEM,
            action=actions.STANDING_REBUILT,
            details={"standings": standings, "patients": patients},
        )
    return {"standings": standings, "patients": patients}


COUNT_CHANGES_KEPT = timedelta(days=1)  # campaigns.selectors.count_index reloads after half of this without a read


def count_changes_prune() -> int:
    """Delete the live counts' change log (migration consent 0011, ADR 0022) older than COUNT_CHANGES_KEPT: a
    count index reads it before every answer and loads everything again when it has not read it for half of that
    time, so no index needs the pruned rows. Returns how many went. PostgreSQL only (SQLite has no log)."""
    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM consent_countchange WHERE created_at < statement_timestamp() - %s", [COUNT_CHANGES_KEPT])
        return cursor.rowcount
