"""The step scanner (ADR 0016): take the running enrolments that are due — an indexed scan of `due_at`, FOR UPDATE
SKIP LOCKED — and run their steps in one transaction.

Nothing here talks to a mail server. A send step creates the step's delivery (queued, or blocked with its reason)
and the step's record in the same transaction that moves the enrolment on; the one sender then checks and sends
the delivery like any campaign's (campaigns.sending.dispatch, R-SEND-COVERED). So a worker killed mid-pass loses
nothing and repeats nothing: the transaction rolls back and the enrolments are due again. The sender's own
guarantees (a lease, a message sent twice only when it was in flight, and then flagged) cover the message.

At each step, for an enrolment that is due:
- it is no longer covered for the journey's purpose (THE predicate, advisory here): it exits, and at a send step
  the blocked delivery records the reason;
- send: held to the end of the quiet hours in the patient's time zone; dropped (a blocked delivery,
  `frequency_cap`) when the patient has had the organisation's cap of marketing messages; otherwise queued;
- wait: on arrival, due after the wait (and at the next local time of day, when the step names one);
- branch: on arrival, due at the end of the time allowed; woken early by the event (journeys.engine.intake); the
  "yes" way when the event (or a click on one of the journey's messages) happened since the patient entered;
- exit, or past the last step: the enrolment ends.
Each pass writes one audit event per journey: its enrolments by outcome (ids and codes only).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.db.models.expressions import RawSQL
from django.utils import timezone

from audit import actions
from audit.services import audit_record
from campaigns.models import Delivery
from campaigns.selectors.campaigns import JOURNEY_PASS_BLOCKED, delivery_block_reason_list
from campaigns.selectors.fatigue import frequency_cap_applies, recent_marketing_counts
from consent.models import Patient, PatientEvent, Purpose, Suppression
from consent.selectors.coverage import CoverageGap, authorization_covering_list
from journeys.engine.intake import conditions_match
from journeys.models import (
    Enrolment,
    ExitReason,
    Journey,
    JourneyStep,
    JourneyVersion,
    StepKind,
    StepOutcome,
    StepRun,
)
from journeys.timing import next_local_time, patient_zone, quiet_hours, quiet_until, wait_duration
from observability import metrics

# An enrolment goes through at most this many steps in one pass (steps only go forward, so this is a bound on
# the work of one pass, never a loop guard that cuts a journey).
_STEPS_PER_PASS = 64


@dataclass(frozen=True)
class _Version:
    purpose: Purpose
    steps: dict[int, JourneyStep]


def _plans_read(version_ids: set[int]) -> dict[int, _Version]:
    """The steps of each version, read once per pass (two queries). A submitted version never changes."""
    steps: dict[int, dict[int, JourneyStep]] = defaultdict(dict)
    for step in JourneyStep.objects.filter(version_id__in=version_ids).order_by("position"):
        steps[step.version_id][step.position] = step
    return {
        version.pk: _Version(purpose=version.journey.purpose, steps=steps[version.pk])
        for version in JourneyVersion.objects.select_related("journey__purpose").filter(pk__in=version_ids)
    }


class _NewDelivery(NamedTuple):
    """A step's delivery, to be inserted with the pass's writes (a tuple: a pass makes hundreds)."""

    campaign_id: int
    patient_id: int
    sequence: int
    status: str = Delivery.Status.QUEUED
    block_reason: str = ""


def _exit_reason_for(gap: str) -> str:
    return ExitReason.REVOKED if gap == CoverageGap.REVOKED else ExitReason.NOT_COVERED


@dataclass
class _Pass:
    now: datetime
    plans: dict[int, _Version]
    # Marketing messages each patient had in the cap's period, this pass's own included as they are queued.
    recent: dict[int, int]
    deliveries: list[_NewDelivery] = field(default_factory=list)
    # (enrolment id, step id, outcome, reason, index into deliveries or None)
    runs: list[tuple[int, int | None, str, str, int | None]] = field(default_factory=list)
    outcomes: dict[int, dict[str, list[int]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    # Per journey, the indexes (into deliveries) of those created blocked: the pass event names their ids, the
    # audit record of each (campaigns' delivery evidence finds it by id).
    blocked: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    changed: list[Enrolment] = field(default_factory=list)

    def record(self, enrolment: Enrolment, step: JourneyStep | None, outcome: str, reason: str = "", delivery=None):
        index = None
        if delivery is not None:
            self.deliveries.append(delivery)
            index = len(self.deliveries) - 1
            if delivery.status == Delivery.Status.BLOCKED:
                self.blocked[enrolment.journey_id].append(index)
        self.runs.append((enrolment.pk, step.pk if step else None, outcome, reason, index))
        key = f"{outcome}_{reason}" if reason else outcome
        self.outcomes[enrolment.journey_id][key].append(enrolment.pk)


def _end(enrolment: Enrolment, *, now: datetime, reason: str) -> None:
    enrolment.status = Enrolment.Status.ENDED
    enrolment.ended_at = now
    enrolment.exit_reason = reason
    enrolment.step_started_at = None
    enrolment.held_reason = ""


def _advance(enrolment: Enrolment, step: JourneyStep, *, to: int | None, now: datetime) -> None:
    enrolment.step_position = to if to is not None else step.position + 1
    enrolment.step_started_at = None
    enrolment.held_reason = ""
    enrolment.due_at = now


def journey_steps_advance(*, batch_size: int | None = None) -> tuple[int, set[int]]:
    """One pass of the scanner. Returns (enrolments taken, ids of the step campaigns that got queued deliveries),
    so that the caller wakes the sender for each once this has committed."""
    batch_size = batch_size or settings.HIPAAMAIL_JOURNEY_BATCH_SIZE
    hours = quiet_hours()
    with transaction.atomic(durable=True):
        now = timezone.now()
        enrolments = list(
            Enrolment.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=Enrolment.Status.ACTIVE, due_at__lte=now, journey__status=Journey.Status.ACTIVE)
            # The patient's time zone in the same statement (its row is joined, not locked).
            .annotate(patient_time_zone=F("patient__time_zone"))
            .order_by("due_at")[:batch_size]
        )
        if not enrolments:
            return 0, set()
        plans = _plans_read({e.version_id for e in enrolments})
        by_purpose: dict[int, list[int]] = defaultdict(list)
        for enrolment in enrolments:
            by_purpose[plans[enrolment.version_id].purpose.pk].append(enrolment.patient_id)
        # Advisory (the sender decides again at the moment of sending): why each patient is not covered now.
        gaps = {purpose_id: _gaps(purpose_id=purpose_id, patient_ids=ids) for purpose_id, ids in by_purpose.items()}
        capped_purposes = {plan.purpose.pk for plan in plans.values() if frequency_cap_applies(plan.purpose)}
        capped_patients = [pid for purpose_id in capped_purposes for pid in by_purpose[purpose_id]]
        work = _Pass(now=now, plans=plans, recent=recent_marketing_counts(patient_ids=capped_patients))
        branch_facts = _branch_facts(enrolments, plans)
        for enrolment in enrolments:
            _run(
                enrolment,
                work=work,
                zone=patient_zone(enrolment.patient_time_zone),
                hours=hours,
                gaps=gaps,
                capped=capped_purposes,
                branch_facts=branch_facts,
            )
        _write(work, enrolments)
        blocked_reasons = [d.block_reason for d in work.deliveries if d.status == Delivery.Status.BLOCKED]
        transaction.on_commit(lambda: metrics.deliveries_blocked_count(stage="journey", reasons=blocked_reasons))
    return len(enrolments), {d.campaign_id for d in work.deliveries if d.status == Delivery.Status.QUEUED}


def _gaps(*, purpose_id: int, patient_ids: list[int]) -> dict[int, str]:
    """{patient id: why a message for this purpose would be blocked now} for the pass's patients (absent: it
    would be sent), as delivery_block_reason_list answers it.

    On PostgreSQL the pass's patients travel as one array parameter to THE predicate
    (authorization_covering_list) and to the suppression list, and only those these leave out (usually none)
    go to delivery_block_reason_list for their reasons, as the launch does: a `patient_id IN (…)` of hundreds
    of placeholders, twice, cost a quarter of a pass in Python. Not an EXISTS in the statement that takes
    the enrolments: PostgreSQL plans that for every due row, not the batch's, and hashes every authorization
    of the purpose instead."""
    if connection.vendor != "postgresql":
        return delivery_block_reason_list(purpose_id=purpose_id, patient_ids=patient_ids)
    these = RawSQL("SELECT unnest(%s::bigint[])", [patient_ids])
    covered = set(
        authorization_covering_list(purpose_id=purpose_id)
        .filter(patient_id__in=these)
        .values_list("patient_id", flat=True)
    )
    suppressed = set(
        Patient.objects.filter(pk__in=these, email_digest__in=Suppression.objects.values("email_digest")).values_list(
            "pk", flat=True
        )
    )
    suspects = [pid for pid in patient_ids if pid not in covered or pid in suppressed]
    return delivery_block_reason_list(purpose_id=purpose_id, patient_ids=suspects) if suspects else {}


def _branch_facts(enrolments: list[Enrolment], plans: dict[int, _Version]) -> dict[tuple[int, int], bool]:
    """For each enrolment due at a branch step: whether its event happened (or one of its messages was clicked)
    since the patient entered. Two queries for the whole pass."""
    waiting = []
    for enrolment in enrolments:
        step = plans[enrolment.version_id].steps.get(enrolment.step_position)
        if step is not None and step.kind == StepKind.BRANCH and enrolment.step_started_at is not None:
            waiting.append((enrolment, step))
    facts: dict[tuple[int, int], bool] = {}
    if not waiting:
        return facts
    event_types = {step.branch_event_type for _, step in waiting if step.branch_event_type}
    events = defaultdict(list)
    if event_types:
        oldest = min(enrolment.entered_at for enrolment, _ in waiting)
        for patient_id, type_, occurred_at, attributes in PatientEvent.objects.filter(
            patient_id__in={e.patient_id for e, _ in waiting}, type__in=event_types, occurred_at__gte=oldest
        ).values_list("patient_id", "type", "occurred_at", "attributes"):
            events[patient_id].append((type_, occurred_at, attributes))
    clicked = set()
    if any(step.branch_on_click for _, step in waiting):
        clicked = set(
            StepRun.objects.filter(
                enrolment_id__in=[e.pk for e, s in waiting if s.branch_on_click], delivery__clicked_at__isnull=False
            ).values_list("enrolment_id", flat=True)
        )
    for enrolment, step in waiting:
        happened = enrolment.pk in clicked
        if step.branch_event_type and not happened:
            happened = any(
                type_ == step.branch_event_type
                and occurred_at >= enrolment.entered_at
                and conditions_match(step.branch_event_conditions, attributes)
                for type_, occurred_at, attributes in events.get(enrolment.patient_id, ())
            )
        facts[(enrolment.pk, step.position)] = happened
    return facts


def _run(enrolment: Enrolment, *, work: _Pass, zone, hours, gaps, capped, branch_facts) -> None:
    now = work.now
    work.changed.append(enrolment)
    plan = work.plans[enrolment.version_id]
    purpose_id = plan.purpose.pk
    gap = gaps[purpose_id].get(enrolment.patient_id)
    if enrolment.control:
        # A held-out enrolment is due only when its conversion period is over.
        _end(enrolment, now=now, reason=ExitReason.CONTROL_ENDED)
        work.record(enrolment, None, StepOutcome.EXITED, ExitReason.CONTROL_ENDED)
        return
    for _ in range(_STEPS_PER_PASS):
        step = plan.steps.get(enrolment.step_position)
        if step is None:
            _end(enrolment, now=now, reason=ExitReason.COMPLETED)
            work.record(enrolment, None, StepOutcome.EXITED, ExitReason.COMPLETED)
            return
        if gap and step.kind != StepKind.SEND:
            # No longer covered: the patient leaves the journey at whatever step it reached.
            reason = _exit_reason_for(gap)
            _end(enrolment, now=now, reason=reason)
            work.record(enrolment, step, StepOutcome.EXITED, reason)
            return
        if step.kind == StepKind.SEND:
            if gap:
                delivery = _NewDelivery(
                    step.campaign_id, enrolment.patient_id, enrolment.sequence, Delivery.Status.BLOCKED, gap
                )
                work.record(enrolment, step, StepOutcome.BLOCKED, gap, delivery)
                reason = _exit_reason_for(gap)
                _end(enrolment, now=now, reason=reason)
                work.record(enrolment, step, StepOutcome.EXITED, reason)
                return
            until = quiet_until(now, zone, hours)
            if until is not None:
                if enrolment.held_reason != "quiet_hours":
                    work.record(enrolment, step, StepOutcome.HELD, "quiet_hours")
                enrolment.held_reason = "quiet_hours"
                enrolment.due_at = until
                return
            if purpose_id in capped and work.recent.get(enrolment.patient_id, 0) >= settings.HIPAAMAIL_FREQUENCY_CAP:
                delivery = _NewDelivery(
                    step.campaign_id,
                    enrolment.patient_id,
                    enrolment.sequence,
                    Delivery.Status.BLOCKED,
                    Delivery.BlockReason.FREQUENCY_CAP,
                )
                work.record(enrolment, step, StepOutcome.DROPPED, Delivery.BlockReason.FREQUENCY_CAP, delivery)
            else:
                delivery = _NewDelivery(step.campaign_id, enrolment.patient_id, enrolment.sequence)
                work.record(enrolment, step, StepOutcome.QUEUED, "", delivery)
                if purpose_id in capped:  # counted at once, for a later step of this same pass
                    work.recent[enrolment.patient_id] = work.recent.get(enrolment.patient_id, 0) + 1
            _advance(enrolment, step, to=step.next_position, now=now)
            continue
        if step.kind == StepKind.WAIT:
            if enrolment.step_started_at is None:
                enrolment.step_started_at = now
                due = now + wait_duration(step.wait_minutes)
                if step.until_local_time is not None:
                    due = next_local_time(due, step.until_local_time, zone)
                enrolment.due_at = due
                return
            work.record(enrolment, step, StepOutcome.WAITED)
            _advance(enrolment, step, to=step.next_position, now=now)
            continue
        if step.kind == StepKind.BRANCH:
            if enrolment.step_started_at is None:
                enrolment.step_started_at = now
                enrolment.due_at = now + wait_duration(step.wait_minutes)
                return
            happened = branch_facts.get((enrolment.pk, step.position), False)
            if not happened and now < enrolment.step_started_at + wait_duration(step.wait_minutes):
                # Woken by an event that did not match (another patient's, another condition): wait on.
                enrolment.due_at = enrolment.step_started_at + wait_duration(step.wait_minutes)
                return
            if happened:
                work.record(enrolment, step, StepOutcome.BRANCH_YES)
                _advance(enrolment, step, to=step.yes_position, now=now)
            else:
                work.record(enrolment, step, StepOutcome.BRANCH_NO)
                _advance(enrolment, step, to=step.no_position, now=now)
            continue
        # StepKind.EXIT
        _end(enrolment, now=now, reason=ExitReason.EXIT_STEP)
        work.record(enrolment, step, StepOutcome.EXITED, ExitReason.EXIT_STEP)
        return


_ENROLMENT_FIELDS = ("status", "step_position", "step_started_at", "due_at", "held_reason", "ended_at", "exit_reason")


def _write(work: _Pass, enrolments: list[Enrolment]) -> None:
    """The pass's writes: deliveries, step records, enrolments, one audit event per journey. The event lists the
    enrolments by outcome and, under JOURNEY_PASS_BLOCKED, the ids of the deliveries it created blocked."""
    if connection.vendor == "postgresql":
        delivery_ids = _write_postgresql(work, enrolments)
    else:
        delivery_ids = _write_orm(work, enrolments)
    for journey_id, outcomes in sorted(work.outcomes.items()):
        details = {key: sorted(ids) for key, ids in sorted(outcomes.items())}
        if work.blocked.get(journey_id):
            details[JOURNEY_PASS_BLOCKED] = sorted(delivery_ids[index] for index in work.blocked[journey_id])
        audit_record(
            actor=None,
            actor_role=actions.SYSTEM,
            action=actions.JOURNEY_STEPS_RUN,
            object_type="journey",
            object_id=journey_id,
            details=details,
        )


def _write_orm(work: _Pass, enrolments: list[Enrolment]) -> list[int]:
    """SQLite (the demo): bulk_create and bulk_update. Returns the deliveries' ids, in work.deliveries' order."""
    deliveries = Delivery.objects.bulk_create([Delivery(**d._asdict()) for d in work.deliveries])
    StepRun.objects.bulk_create(
        [
            StepRun(
                enrolment_id=enrolment_id,
                step_id=step_id,
                outcome=outcome,
                reason=reason,
                delivery_id=deliveries[index].pk if index is not None else None,
                at=work.now,
            )
            for enrolment_id, step_id, outcome, reason, index in work.runs
        ]
    )
    Enrolment.objects.bulk_update(enrolments, _ENROLMENT_FIELDS)
    return [delivery.pk for delivery in deliveries]


# Delivery columns a step's insert fills with the model's defaults (every one but these), as the launch does.
_DELIVERY_SET_COLUMNS = {"id", "campaign", "patient", "sequence", "status", "block_reason", "created_at"}
_ENROLMENT_PASS_TABLE = "hm_journey_pass"


def _write_postgresql(work: _Pass, enrolments: list[Enrolment]) -> list[int]:
    """The pass's rows in five statements whatever its size: the deliveries' ids reserved from their sequence
    (so that the step records and the pass event can name them; returned, in work.deliveries' order), COPY of the deliveries, COPY of the step records, COPY of the
    enrolments' new state into a temporary table and one UPDATE … FROM it (as the patient import's updates).
    bulk_create's model instances and per-field preparation of every row cost more Python than the rest of the
    pass, and the eight array parameters of an UPDATE … FROM unnest were quoted in Python (Django's client-side
    binding) for every pass."""
    quote = connection.ops.quote_name
    deliveries_table = quote(Delivery._meta.db_table)
    defaults = [field for field in Delivery._meta.concrete_fields if field.name not in _DELIVERY_SET_COLUMNS]
    default_columns = "".join(f", {quote(field.column)}" for field in defaults)
    default_values = tuple(field.get_db_prep_save(field.get_default(), connection) for field in defaults)
    with connection.cursor() as cursor:
        raw = cursor.cursor
        delivery_ids: list[int] = []
        if work.deliveries:
            # Ids in ascending order: they follow the pass's order, as bulk_create's would. The sequence's name
            # is looked up once (MATERIALIZED), not for each id.
            cursor.execute(
                "WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence(%s, 'id')::regclass AS sequence) "
                "SELECT nextval(s.sequence) FROM s, generate_series(1, %s) ORDER BY 1",
                [Delivery._meta.db_table, len(work.deliveries)],
            )
            delivery_ids = [pk for (pk,) in cursor.fetchall()]
            created_at = timezone.now()
            with raw.copy(
                f"COPY {deliveries_table} (id, campaign_id, patient_id, sequence, status, block_reason, created_at"
                f"{default_columns}) FROM STDIN"
            ) as copy:
                for pk, delivery in zip(delivery_ids, work.deliveries, strict=True):
                    copy.write_row((pk, *delivery, created_at, *default_values))
        if work.runs:
            with raw.copy(
                f"COPY {quote(StepRun._meta.db_table)} (enrolment_id, step_id, outcome, reason, delivery_id, at) "
                "FROM STDIN"
            ) as copy:
                for enrolment_id, step_id, outcome, reason, index in work.runs:
                    delivery_id = delivery_ids[index] if index is not None else None
                    copy.write_row((enrolment_id, step_id, outcome, reason, delivery_id, work.now))
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_ENROLMENT_PASS_TABLE} (id bigint PRIMARY KEY, status text, "
            "step_position smallint, step_started_at timestamptz, due_at timestamptz, held_reason text, "
            "ended_at timestamptz, exit_reason text) ON COMMIT DROP"
        )
        # Empty unless an outer transaction (a test's) ran an earlier pass: the table lives until the commit.
        cursor.execute(f"TRUNCATE {_ENROLMENT_PASS_TABLE}")
        with raw.copy(f"COPY {_ENROLMENT_PASS_TABLE} (id, {', '.join(_ENROLMENT_FIELDS)}) FROM STDIN") as copy:
            for e in enrolments:
                copy.write_row(
                    (
                        e.pk,
                        e.status,
                        e.step_position,
                        e.step_started_at,
                        e.due_at,
                        e.held_reason,
                        e.ended_at,
                        e.exit_reason,
                    )
                )
        cursor.execute(
            f"""
            UPDATE {quote(Enrolment._meta.db_table)} AS e
               SET status = v.status, step_position = v.step_position, step_started_at = v.step_started_at,
                   due_at = v.due_at, held_reason = v.held_reason, ended_at = v.ended_at, exit_reason = v.exit_reason
              FROM {_ENROLMENT_PASS_TABLE} AS v
             WHERE e.id = v.id
            """
        )
    return delivery_ids
