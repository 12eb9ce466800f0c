"""Launching a campaign: one delivery row per patient of its segment, each created queued or already blocked with its
reason (one INSERT … SELECT per batch on PostgreSQL). The sender (campaigns.sending.dispatch) re-checks every
queued one when it sends."""
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django.utils.translation import gettext

from audit import actions
from audit.services import audit_record
from campaigns.models import Campaign, Delivery
from campaigns.permissions import sending_control_check
from campaigns.segments import segment_patient_ids
from campaigns.selectors.campaigns import delivery_block_reason_list
from campaigns.selectors.fatigue import frequency_cap_applies, recent_marketing_count, recent_marketing_counts
from campaigns.services.lifecycle import campaign_move
from campaigns.tasks import campaign_dispatch_task
from consent.models import Suppression
from consent.selectors.coverage import (
    COVERED,
    authorization_covering_list,
    coverage_reason_execute,
    coverage_reason_sql,
)
from observability import metrics

logger = logging.getLogger(__name__)

# Patients per INSERT … SELECT statement of a launch (PostgreSQL), and per bulk insert (SQLite).
_LAUNCH_INSERT_BATCH = 50_000


class CampaignAlreadyLaunched(ValidationError):
    """A second launch of the same campaign (two clicks, two workers, the scheduler and the button): refused,
    nothing created, nothing sent twice."""


def campaign_launch(*, actor, campaign_id: int) -> Campaign:
    """Materialise one delivery per patient in the audience and wake the workers.

    `actor` is the staff member who pressed "Send now", or None for the scheduler at the campaign's time.
    Patients without a covering authorization, or whose address is suppressed, get a delivery that is
    blocked from the start with its reason, so the report shows the whole audience. This check is advisory:
    the sender checks again.

    Launching twice is impossible: the status check is made under the campaign's row lock, so of two
    concurrent launches (two clicks, two workers, the scheduler and the button) the second waits for the
    first to commit, then finds the campaign launched and raises CampaignAlreadyLaunched, having created
    nothing; the unique (campaign, patient, sequence) constraint backs it.
    """
    if actor is not None:
        sending_control_check(actor)
    with transaction.atomic(durable=True):
        # The campaign's row only (of self): locking its purpose too would serialise every launch for a purpose.
        campaign = Campaign.objects.select_for_update(of=("self",)).select_related("purpose").get(pk=campaign_id)
        if campaign.launched_at is not None:
            raise CampaignAlreadyLaunched(
                gettext("A %(status)s campaign cannot be launched: it was launched already, and nothing is sent twice.")
                % {"status": campaign.get_status_display().lower()}
            )
        if campaign.status not in (Campaign.Status.APPROVED, Campaign.Status.SCHEDULED):
            raise ValidationError(
                gettext("A %(status)s campaign cannot be launched.") % {"status": campaign.get_status_display().lower()}
            )
        # Checked again at launch: a block retired or a form version that dropped a merge field since the
        # approval (R-SEND-SCOPE) stops the launch with the reason, rather than every batch failing to render.
        from campaigns.content import content_of, content_problems

        refused = content_problems(content_of(campaign))
        if refused:
            raise ValidationError([ValidationError(problem.message, code=problem.code) for problem in refused])
        if connection.vendor == "postgresql":
            audience, queued, blocked_counts = _deliveries_materialise_postgresql(campaign=campaign)
        else:
            audience, queued, blocked_counts = _deliveries_materialise_python(campaign=campaign)
        campaign.status = Campaign.Status.SENDING
        campaign.launched_at = timezone.now()
        campaign.save(update_fields=["status", "launched_at"])
        audit_record(
            actor=actor,
            action=actions.CAMPAIGN_LAUNCHED,
            object_type="campaign",
            object_id=campaign.pk,
            details={"audience": audience, "queued": queued, "blocked": blocked_counts},
        )
        transaction.on_commit(lambda: metrics.deliveries_blocked_count(stage="launch", by_reason=blocked_counts))
        # One wake-up per sender that should work on it at once (SEND_DISPATCHERS, docs/scaling.md): each claims
        # its own batches (SKIP LOCKED), so several hosts share one campaign from its first second, rather than
        # one more joining at each reconciler run.
        # With nothing queued, one wake-up still finishes the campaign.
        wake_ups = max(1, settings.HIPAAMAIL_SEND_DISPATCHERS) if queued else 1
        transaction.on_commit(lambda: _dispatchers_wake(campaign_id=campaign.pk, count=wake_ups))
    return campaign


def _dispatchers_wake(*, campaign_id: int, count: int) -> None:
    for _ in range(count):
        campaign_dispatch_task.delay(campaign_id)


def campaign_launch_refuse(*, campaign_id: int, codes: list[str]) -> None:
    """The scheduler could not launch a scheduled campaign (its content no longer passes the checks: a retired
    block, a merge field its purpose's current form dropped). It goes back to draft, so it leaves the schedule
    and its author sees why on the editor; audited with the problem codes."""
    with transaction.atomic(durable=True):
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status != Campaign.Status.SCHEDULED:
            return
        campaign_move(
            campaign,
            actor=None,
            to=Campaign.Status.DRAFT,
            action=actions.CAMPAIGN_LAUNCH_REFUSED,
            details={"codes": sorted(set(codes))[:10]},
        )
    logger.warning("scheduled campaign %s not launched: %s", campaign_id, ",".join(sorted(set(codes))))


def _capped(campaign: Campaign, patient_ids: list[int]) -> dict[int, str]:
    """Of these covered patients, those the organisation's frequency cap withholds this marketing message from
    (campaigns.selectors.fatigue, ADR 0016), with the reason `frequency_cap`."""
    if not patient_ids or not frequency_cap_applies(campaign.purpose):
        return {}
    counts = recent_marketing_counts(patient_ids=patient_ids)
    return {
        pid: Delivery.BlockReason.FREQUENCY_CAP
        for pid in patient_ids
        if counts.get(pid, 0) >= settings.HIPAAMAIL_FREQUENCY_CAP
    }


def _deliveries_materialise_python(*, campaign: Campaign) -> tuple[int, int, dict[str, int]]:
    """The launch on SQLite (the demo): the audience's ids in Python, reasons for the uncovered, bulk insert."""
    # The campaign's segment (every patient without one), decided now: later joiners are not added.
    audience = list(segment_patient_ids(segment_id=campaign.segment_id).values_list("id", flat=True))
    gaps = delivery_block_reason_list(purpose_id=campaign.purpose_id, patient_ids=audience)
    gaps |= _capped(campaign, [pid for pid in audience if pid not in gaps])
    rows = [
        Delivery(campaign_id=campaign.pk, patient_id=patient_id)
        if patient_id not in gaps
        else Delivery(
            campaign_id=campaign.pk,
            patient_id=patient_id,
            status=Delivery.Status.BLOCKED,
            block_reason=gaps[patient_id],
        )
        for patient_id in audience
    ]
    Delivery.objects.bulk_create(rows, batch_size=_LAUNCH_INSERT_BATCH)
    blocked_counts: dict[str, int] = defaultdict(int)
    for reason in gaps.values():
        blocked_counts[reason] += 1
    return len(audience), len(audience) - len(gaps), dict(blocked_counts)


# Columns an INSERT … SELECT of deliveries fills with the model's defaults (every one but these).
_LAUNCH_SET_COLUMNS = {"id", "campaign", "patient", "status", "block_reason", "created_at"}


def _deliveries_materialise_postgresql(*, campaign: Campaign) -> tuple[int, int, dict[str, int]]:
    """The launch on PostgreSQL (DESIGN.md, the send pipeline, step 1): one `INSERT … SELECT` per batch of
    `_LAUNCH_INSERT_BATCH` patients of the campaign's compiled segment (keyset on the primary key), inside the
    launch's transaction, each row created queued or blocked with its reason as consent classifies it in the same
    statement (consent.selectors.coverage.coverage_reason_sql: THE predicate, then consent's reasons, then
    suppressions — what `delivery_block_reason_list` says patient by patient). No patient id travels through
    Python, blocked or not: at a million patients a launch of 300,000 takes seconds, not minutes (issue 15,
    docs/benchmarks.md). The batch's id range bounds the authorizations each statement reads (an index range).
    In patient order, so delivery ids follow patient ids whatever join the planner picks (reports list
    deliveries by id). With the frequency cap on, `_deliveries_materialise_postgresql_capped` (the cap's counts are
    campaigns' own)."""
    if frequency_cap_applies(campaign.purpose):
        return _deliveries_materialise_postgresql_capped(campaign=campaign)
    audience = segment_patient_ids(segment_id=campaign.segment_id)  # values("id"), ordered by id
    table = connection.ops.quote_name(Delivery._meta.db_table)
    default_columns, default_placeholders, default_values = _insert_defaults()
    tally = _LaunchTally()
    with connection.cursor() as cursor:
        for last, batch_last in _audience_batches(cursor, audience):
            reasons_sql, reasons_params = coverage_reason_sql(
                purpose_id=campaign.purpose_id,
                patients=audience.filter(id__gt=last, id__lte=batch_last),
                patient_ids_between=(last, batch_last),
            )
            coverage_reason_execute(
                cursor,
                f"""
                WITH inserted AS (
                    INSERT INTO {table} (campaign_id, patient_id, status, block_reason, created_at{default_columns})
                    SELECT %s, r.patient_id,
                           CASE WHEN r.reason = %s THEN %s ELSE %s END,
                           CASE WHEN r.reason = %s THEN '' ELSE r.reason END,
                           NOW(){default_placeholders}
                      -- OFFSET 0 keeps the classification a subquery of its own: flattened into this SELECT, its
                      -- reason expression was evaluated once per reference (its EXISTS sub-plan three times a
                      -- patient; a fifth of the launch at a million patients, docs/benchmarks.md).
                      FROM (SELECT * FROM ({reasons_sql}) AS r0 OFFSET 0) AS r
                     ORDER BY r.patient_id
                    RETURNING status, block_reason
                )
                SELECT status, block_reason, count(*) FROM inserted GROUP BY status, block_reason
                """,
                [
                    campaign.pk,
                    COVERED,
                    Delivery.Status.QUEUED,
                    Delivery.Status.BLOCKED,
                    COVERED,
                    *default_values,
                    *reasons_params,
                ],
            )
            tally.add(cursor.fetchall())
    return tally.total, tally.queued, dict(tally.blocked)


def _insert_defaults() -> tuple[str, str, list]:
    """The launch's INSERT … SELECT names every column the database would otherwise leave empty: their names (",
    col" each), their placeholders (", %s" each) and their default values."""
    defaults = [field for field in Delivery._meta.concrete_fields if field.name not in _LAUNCH_SET_COLUMNS]
    columns = "".join(f", {connection.ops.quote_name(field.column)}" for field in defaults)
    values = [field.get_db_prep_save(field.get_default(), connection) for field in defaults]
    return columns, ", %s" * len(defaults), values


def _audience_batches(cursor, audience):
    """The segment's patients in batches of `_LAUNCH_INSERT_BATCH` (keyset on the primary key): yields each batch's
    id range as (after, up to and including)."""
    last = 0
    while True:
        bound_sql, bound_params = audience.filter(id__gt=last)[:_LAUNCH_INSERT_BATCH].query.sql_with_params()
        cursor.execute(f"SELECT max(b.id) FROM ({bound_sql}) AS b", bound_params)
        (batch_last,) = cursor.fetchone()
        if batch_last is None:
            return
        yield last, batch_last
        last = batch_last


@dataclass
class _LaunchTally:
    """What the batches' INSERT … RETURNING counted: (status, block reason, n) rows."""

    total: int = 0
    queued: int = 0
    blocked: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, rows) -> None:
        for status, reason, n in rows:
            self.total += n
            if status == Delivery.Status.QUEUED:
                self.queued += n
            else:
                self.blocked[reason] += n


def _deliveries_materialise_postgresql_capped(*, campaign: Campaign) -> tuple[int, int, dict[str, int]]:
    """The launch on PostgreSQL with the frequency cap on (DESIGN.md, the send pipeline, step 1): `INSERT … SELECT`
    from the campaign's compiled segment query, in batches of patients (keyset on the primary key), inside the
    launch's transaction.

    Per batch of `_LAUNCH_INSERT_BATCH` patients of the segment:
    1. the batch's last patient id (the segment query, `id > previous`, ordered, limited);
    2. the patients of the batch that would not be sent to: not covered by THE predicate
       (consent.selectors.coverage.authorization_covering_list, as a correlated EXISTS) or with a suppressed address;
    3. their reasons from `delivery_block_reason_list` — consent's own account of why, the function the
       screens use — usually a short list;
    4. one `INSERT … SELECT` of the batch's patients from the segment query, left-joined with those reasons: a
       patient with a reason is created blocked with it, every other one queued; in patient order, so delivery
       ids follow patient ids whatever join the planner picks (reports list deliveries by id).
    Only the uncovered patients' ids and reasons travel through Python; the queued rows never do.
    """
    audience = segment_patient_ids(segment_id=campaign.segment_id)  # values("id"), ordered by id
    table = connection.ops.quote_name(Delivery._meta.db_table)
    default_columns, default_placeholders, default_values = _insert_defaults()
    tally = _LaunchTally()
    with connection.cursor() as cursor:
        for last, batch_last in _audience_batches(cursor, audience):
            batch = audience.filter(id__gt=last, id__lte=batch_last)
            # The id range repeated inside the subquery changes nothing logically; it keeps the subquery's work
            # to this batch's authorizations whichever plan PostgreSQL picks (a hashed subplan would otherwise
            # read every authorization for the purpose once per batch).
            covering = authorization_covering_list(purpose_id=campaign.purpose_id).filter(
                patient_id=OuterRef("id"), patient_id__gt=last, patient_id__lte=batch_last
            )
            suppressed = Suppression.objects.filter(email_digest=OuterRef("email_digest"))
            withheld = ~Exists(covering) | Exists(suppressed)
            if frequency_cap_applies(campaign.purpose):
                candidates = batch.annotate(recent=recent_marketing_count())
                withheld |= Q(recent__gte=settings.HIPAAMAIL_FREQUENCY_CAP)
            else:
                candidates = batch
            uncovered = list(candidates.filter(withheld).values_list("id", flat=True))
            reasons = delivery_block_reason_list(purpose_id=campaign.purpose_id, patient_ids=uncovered) if uncovered else {}
            reasons |= _capped(campaign, [pid for pid in uncovered if pid not in reasons])
            batch_sql, batch_params = batch.query.sql_with_params()
            cursor.execute(
                f"""
                WITH inserted AS (
                    INSERT INTO {table} (campaign_id, patient_id, status, block_reason, created_at{default_columns})
                    SELECT %s, b.id,
                           CASE WHEN r.reason IS NULL THEN %s ELSE %s END,
                           coalesce(r.reason, ''),
                           NOW(){default_placeholders}
                      FROM ({batch_sql}) AS b
                      LEFT JOIN unnest(%s::bigint[], %s::text[]) AS r(patient_id, reason) ON r.patient_id = b.id
                     ORDER BY b.id
                    RETURNING status, block_reason
                )
                SELECT status, block_reason, count(*) FROM inserted GROUP BY status, block_reason
                """,
                [
                    campaign.pk,
                    Delivery.Status.QUEUED,
                    Delivery.Status.BLOCKED,
                    *default_values,
                    *batch_params,
                    list(reasons),
                    list(reasons.values()),
                ],
            )
            tally.add(cursor.fetchall())
    return tally.total, tally.queued, dict(tally.blocked)
