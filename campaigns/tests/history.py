"""The history checker (issue 11, item 7): what the mail server received, with its times, against what the
database committed, for one run of real concurrent senders (campaigns/tests/test_history.py).

Two halves:

- the history and its checker: plain data (`History` and its rows, every instant as POSIX seconds) and one plain
  function, `history_check`, that states the rules and returns each violation it finds. It reads no database and
  starts nothing, so a reviewer can read the rules and a test can feed it a doctored history
  (campaigns/tests/test_history_checker.py);
- the recorder: the calls a run makes with their wall-clock brackets (`Recorder`: revocations on every channel,
  expiry events), the sender processes (`Senders`: real Celery workers, killed and replaced), the reconciler on a
  beat (`Reconciler`), and `history_collect`, which reads what the database committed and what the SMTP sink
  received into a `History`.

Clocks. The sink stamps each message with time.time() when its DATA command arrives (campaigns.tests.smtp_server),
before it answers 250; the recorder brackets each call with time.time() just before and just after; the database
stamps checked_at, sent_at, revoked_at and recorded_at with its own clock. All of them run on this one machine and
read the same system clock, so they are compared directly (as campaigns/tests/sending/test_revocation_race.py does).
"""
from __future__ import annotations

import math
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

# --- The history ----------------------------------------------------------------------------------------------

TERMINAL = frozenset({"sent", "blocked", "failed"})
# Slack for comparing instants that went through two representations (a float from time.time(), microseconds in
# PostgreSQL): far below any real gap between causally ordered events here (a round trip to the database or to
# the SMTP server), far above float rounding.
SLACK = 1e-4


@dataclass(frozen=True)
class Received:
    """One message as the SMTP server took it."""

    message_id: str
    recipient: str
    received_at: float  # time.time() at DATA
    answered_at: float | None = None  # time.time() just before the server's 250 (after received_at)


@dataclass(frozen=True)
class DeliveryRow:
    """A delivery as committed at the end of the run. Times in the database's clock, as POSIX seconds."""

    id: int
    campaign_id: int
    patient_id: int
    purpose_id: int  # the campaign's purpose
    address: str  # the patient's address: where its messages must go
    status: str
    block_reason: str
    authorization_id: int | None
    message_id: str  # as recorded ("" until sent)
    expected_message_id: str  # derived from the id (campaigns.sending.messages.message_id_for): what every copy carries
    checked_at: float | None
    sent_at: float | None
    lease_expires_at: float | None
    possible_duplicate: bool


@dataclass(frozen=True)
class AuthorizationRow:
    """An authorization of a patient of the run, with what ended it (database times)."""

    id: int
    patient_id: int
    purpose_id: int
    signed_at: float
    expires_at: float | None
    event_occurred_at: float | None = None  # its expiry event, when one was recorded
    event_recorded_at: float | None = None
    revoked_at: float | None = None


@dataclass(frozen=True)
class CampaignRow:
    id: int
    purpose_id: int
    status: str
    finished: bool  # finished_at is set


@dataclass(frozen=True)
class RevocationCall:
    """A revocation through one of the channels, bracketed by the wall clock: it committed in [before, after].
    `refused`: the channel refused it (nothing committed: already ended, already revoked), with its message."""

    channel: str  # portal, one_click_http, one_click_service, written
    patient_id: int
    purpose_id: int
    before: float
    after: float
    revoked: tuple[int, ...] = ()  # the authorizations this call revoked
    refused: str = ""


@dataclass(frozen=True)
class ExpiryEventCall:
    """consent.services.authorizations.expiry_event_record, bracketed by the wall clock: recorded (committed) in [before, after],
    saying the event occurs (or occurred) at `occurred_at`."""

    authorization_id: int
    occurred_at: float
    before: float
    after: float
    refused: str = ""


@dataclass
class History:
    """Everything one run recorded. `window`: the senders' SEND_CHECK_WINDOW, in seconds."""

    window: float
    received: list[Received] = field(default_factory=list)
    deliveries: list[DeliveryRow] = field(default_factory=list)
    authorizations: list[AuthorizationRow] = field(default_factory=list)
    campaigns: list[CampaignRow] = field(default_factory=list)
    revocations: list[RevocationCall] = field(default_factory=list)
    expiry_events: list[ExpiryEventCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the harness's own failures (an action that raised)

    @property
    def t0(self) -> float:
        """The earliest instant of the run, so that reports read in seconds from its start."""
        instants = [r.received_at for r in self.received] + [c.before for c in self.revocations]
        instants += [e.before for e in self.expiry_events]
        return min(instants, default=0.0)


@dataclass(frozen=True, order=True)
class Violation:
    rule: str  # the checker's rule: see history_check
    detail: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.detail}"


# --- The checker ----------------------------------------------------------------------------------------------


def history_check(history: History) -> list[Violation]:
    """Every violation of the send pipeline's promises in one recorded run; [] when the history is clean.

    R-SEND-COVERED (the central invariant: a message leaves only under a signed, unexpired, unrevoked authorization
    for the campaign's purpose, checked at sending, within SEND_CHECK_WINDOW of the check), R-REVOKE-ANYTIME
    (nothing for a purpose reaches the mail server once its revocation has committed, on any channel) and
    R-SEND-EVIDENCE (each delivery records the authorization that covered it and its own check and send times, or
    why it was blocked; a second copy only for a delivery that says it may have been sent twice), as rules on the
    history:

    1. "revoked" (R-REVOKE-ANYTIME): no message for a patient and purpose is received after a revocation of that
       patient and purpose returned ("just after" the call: it had committed by then), on any channel. And, sharper,
       none is received after the database's `revoked_at` of the authorization it went out under: the revocation
       held that row FOR UPDATE before stamping it, so no window could still be sending under it.
    2. "expired" (R-SEND-COVERED): no message is received at or after its authorization's expiry: `expires_at`, or
       the `occurred_at` of its expiry event. An event recorded late (occurred_at already past, or passed while
       the recording waited for a window's lock) cannot be honoured before it exists, so an event ends coverage at
       the later of `occurred_at` and the recording's "just after". A message is checked against the
       authorization its delivery names, or, for a delivery that was never recorded sent (a copy that left in a
       crashed window), against each of the patient's authorizations for the purpose: one must have covered it.
    3. "not-terminal", "unfinished": at the end every delivery is sent, blocked or failed, and none is leased;
       every campaign is sent (finished).
    4. "lost", "unknown-message", "unflagged-duplicate", "misaddressed" (R-SEND-EVIDENCE): each sent delivery's
       Message-ID (the one derived from its id) was received at least once; every received message is the
       Message-ID of a delivery that is sent or flagged possible_duplicate, addressed to that delivery's patient;
       a Message-ID received twice or more belongs to a delivery flagged possible_duplicate.
    5. "window", "evidence" (R-SEND-COVERED, R-SEND-EVIDENCE): for every sent delivery,
       checked_at <= sent_at <= checked_at + SEND_CHECK_WINDOW, and the server's 250 for it (the sink's own clock,
       whatever the sender estimated) went out by checked_at + SEND_CHECK_WINDOW; one of its copies reached the server (DATA)
       between checked_at and checked_at + SEND_CHECK_WINDOW (the check it records is the one that let it go: a
       copy's DATA follows its check; sent_at itself is the sender's estimate of the 250, a lower bound since
       184ff30, so it is not compared with the DATA instant); and the authorization it names is the patient's,
       for the campaign's purpose, signed by checked_at, and covered it through sent_at: not expired, no expiry
       event known by then that had occurred, not revoked by then.
    "harness": an action of the run itself failed (reported, so a broken run never passes as clean).
    """
    violations: list[Violation] = []
    t0 = history.t0

    def at(instant: float | None) -> str:
        return "never" if instant is None else f"t+{instant - t0:.4f}s"

    def add(rule: str, detail: str) -> None:
        violations.append(Violation(rule, detail))

    for error in history.errors:
        add("harness", error)

    deliveries_by_message_id = {d.expected_message_id: d for d in history.deliveries}
    authorizations = {a.id: a for a in history.authorizations}
    authorizations_of: dict[tuple[int, int], list[AuthorizationRow]] = defaultdict(list)
    for authorization in history.authorizations:
        authorizations_of[(authorization.patient_id, authorization.purpose_id)].append(authorization)
    event_recorded_after = {
        call.authorization_id: call.after for call in history.expiry_events if not call.refused
    }
    copies: dict[str, list[Received]] = defaultdict(list)
    for message in history.received:
        copies[message.message_id].append(message)

    def coverage_end(authorization: AuthorizationRow) -> float:
        """When the time-based ends stop this authorization covering, on the wall clock (rule 2)."""
        end = authorization.expires_at if authorization.expires_at is not None else math.inf
        if authorization.event_occurred_at is not None:
            known = event_recorded_after.get(authorization.id, authorization.event_occurred_at)
            end = min(end, max(authorization.event_occurred_at, known))
        return end

    # Rules 1 and 2, message by message; rule 4's mapping of each received message to its delivery.
    revocations_of: dict[tuple[int, int], list[RevocationCall]] = defaultdict(list)
    for call in history.revocations:
        if not call.refused:
            revocations_of[(call.patient_id, call.purpose_id)].append(call)
    for message in history.received:
        delivery = deliveries_by_message_id.get(message.message_id)
        if delivery is None:
            add("unknown-message", f"{message.message_id!r} to {message.recipient} at {at(message.received_at)} "
                "is no delivery's Message-ID")
            continue
        if message.recipient != delivery.address.lower():
            add("misaddressed", f"delivery {delivery.id}'s message went to {message.recipient}, not its patient")
        if delivery.status != "sent" and not delivery.possible_duplicate:
            add("unknown-message", f"delivery {delivery.id} is {delivery.status} ({delivery.block_reason or '-'}), "
                f"not flagged possible_duplicate, yet its message was received at {at(message.received_at)}")
        key = (delivery.patient_id, delivery.purpose_id)
        for call in revocations_of[key]:
            if message.received_at > call.after:
                add("revoked", f"delivery {delivery.id} (patient {delivery.patient_id}, purpose {delivery.purpose_id}) "
                    f"received at {at(message.received_at)}, {message.received_at - call.after:.4f}s after the "
                    f"{call.channel} revocation returned (called {at(call.before)}, returned {at(call.after)})")
        if delivery.status == "sent" and delivery.authorization_id in authorizations:
            candidates = [authorizations[delivery.authorization_id]]
        else:
            candidates = authorizations_of[key]
        for authorization in candidates:
            stamped = authorization.revoked_at is not None and message.received_at > authorization.revoked_at + SLACK
            if stamped and not any(message.received_at > call.after for call in revocations_of[key]):  # not twice
                add("revoked", f"delivery {delivery.id} received at {at(message.received_at)}, after authorization "
                    f"{authorization.id}'s revocation was stamped ({at(authorization.revoked_at)})")
        if not candidates:
            add("expired", f"delivery {delivery.id} received at {at(message.received_at)}: patient "
                f"{delivery.patient_id} has no authorization for purpose {delivery.purpose_id}")
        elif not any(message.received_at < coverage_end(a) and a.signed_at <= message.received_at for a in candidates):
            ends = ", ".join(
                f"authorization {a.id} expires_at {at(a.expires_at)}, event occurred {at(a.event_occurred_at)} "
                f"recorded by {at(event_recorded_after.get(a.id))}"
                for a in candidates
            )
            add("expired", f"delivery {delivery.id} received at {at(message.received_at)}, at or after the end "
                f"of coverage: {ends}")

    # Rule 3: everything terminal, nothing leased, every campaign finished.
    for delivery in history.deliveries:
        if delivery.status not in TERMINAL:
            add("not-terminal", f"delivery {delivery.id} is still {delivery.status}")
        if delivery.lease_expires_at is not None:
            add("not-terminal", f"delivery {delivery.id} ({delivery.status}) is still leased")
    for campaign in history.campaigns:
        if campaign.status != "sent" or not campaign.finished:
            add("unfinished", f"campaign {campaign.id} is {campaign.status}, finished={campaign.finished}")

    # Rule 4: nothing lost, duplicates only where flagged.
    for delivery in history.deliveries:
        received = copies.get(delivery.expected_message_id, [])
        if delivery.status == "sent":
            if delivery.message_id != delivery.expected_message_id:
                add("lost", f"delivery {delivery.id} recorded Message-ID {delivery.message_id!r}, not "
                    f"{delivery.expected_message_id!r}")
            if not received:
                add("lost", f"delivery {delivery.id} is sent (at {at(delivery.sent_at)}) but its message never "
                    "reached the server")
        if len(received) > 1 and not delivery.possible_duplicate:
            add("unflagged-duplicate", f"delivery {delivery.id} was received {len(received)} times "
                f"({', '.join(at(r.received_at) for r in received)}) and is not flagged possible_duplicate")

    # Rule 5: per-message evidence, and the authorization it names covered it through sent_at.
    for delivery in history.deliveries:
        if delivery.status != "sent":
            continue
        checked, sent = delivery.checked_at, delivery.sent_at
        if checked is None or sent is None:
            add("evidence", f"delivery {delivery.id} is sent with checked_at {checked} and sent_at {sent}")
            continue
        if not checked <= sent + SLACK:
            add("window", f"delivery {delivery.id} sent_at {at(sent)} is before its check {at(checked)}")
        if sent > checked + history.window + SLACK:
            add("window", f"delivery {delivery.id} sent_at {at(sent)} is {sent - checked:.4f}s after its check "
                f"{at(checked)}: more than the {history.window}s window")
        received = copies.get(delivery.expected_message_id, [])
        in_window = [r for r in received if checked - SLACK <= r.received_at <= checked + history.window + SLACK]
        if received and not in_window:
            add("evidence", f"delivery {delivery.id}: no copy reached the server within the window of its check "
                f"{at(checked)} (copies at {', '.join(at(r.received_at) for r in received)})")
        answered = [r.answered_at for r in in_window if r.answered_at is not None]
        if answered and min(answered) > checked + history.window + SLACK:
            # The sender holds a message handed over at its 250, which it cannot have had before the server sent it.
            add("window", f"delivery {delivery.id}: the server answered 250 at {at(min(answered))}, "
                f"{min(answered) - checked:.4f}s after its check {at(checked)}: more than the {history.window}s window "
                f"(recorded sent_at {at(sent)})")
        authorization = authorizations.get(delivery.authorization_id)
        if authorization is None:
            add("evidence", f"delivery {delivery.id} is sent under authorization {delivery.authorization_id}, "
                "which is not one of its patient's")
            continue
        problems = []
        if (authorization.patient_id, authorization.purpose_id) != (delivery.patient_id, delivery.purpose_id):
            problems.append(f"is patient {authorization.patient_id}'s for purpose {authorization.purpose_id}")
        if authorization.signed_at > checked + SLACK:
            problems.append(f"was signed {at(authorization.signed_at)}, after the check")
        if authorization.expires_at is not None and authorization.expires_at <= sent:
            problems.append(f"expired {at(authorization.expires_at)}")
        if (
            authorization.event_occurred_at is not None
            and authorization.event_occurred_at <= sent
            and authorization.event_recorded_at is not None
            and authorization.event_recorded_at <= sent
        ):
            problems.append(f"was ended by an event occurring {at(authorization.event_occurred_at)}, recorded "
                            f"{at(authorization.event_recorded_at)}")
        if authorization.revoked_at is not None and authorization.revoked_at <= sent:
            problems.append(f"was revoked {at(authorization.revoked_at)}")
        if problems:
            add("evidence", f"delivery {delivery.id} sent_at {at(sent)} under authorization {authorization.id}, "
                f"which {'; '.join(problems)}")
    return sorted(set(violations))


def history_figures(history: History) -> dict[str, int]:
    """What a run exercised, for the report: how many messages, duplicates, revocations that landed while their
    patient's message was in flight, expiries that fell while the campaign was sending, and so on."""
    deliveries_by_message_id = {d.expected_message_id: d for d in history.deliveries}
    copies = Counter(message.message_id for message in history.received)
    received_for: dict[tuple[int, int], list[float]] = defaultdict(list)
    for message in history.received:
        delivery = deliveries_by_message_id.get(message.message_id)
        if delivery is not None:
            received_for[(delivery.patient_id, delivery.purpose_id)].append(message.received_at)
    first = min((m.received_at for m in history.received), default=0.0)
    last = max((m.received_at for m in history.received), default=0.0)
    committed = [call for call in history.revocations if not call.refused]
    ends = [a.expires_at for a in history.authorizations if a.expires_at is not None and a.expires_at - first < 60]
    ends += [a.event_occurred_at for a in history.authorizations if a.event_occurred_at is not None]
    blocked = Counter(d.block_reason for d in history.deliveries if d.status == "blocked")
    return {
        "deliveries": len(history.deliveries),
        "received": len(history.received),
        "sent": sum(d.status == "sent" for d in history.deliveries),
        "blocked_revoked": blocked["revoked"],
        "blocked_expired": blocked["expired"],
        "blocked_other": sum(blocked.values()) - blocked["revoked"] - blocked["expired"],
        "duplicates_received": sum(count - 1 for count in copies.values() if count > 1),
        "flagged_possible_duplicate": sum(d.possible_duplicate for d in history.deliveries),
        "revocations": len(committed),
        "revocations_refused": len(history.revocations) - len(committed),
        "revocations_during_send": sum(first < call.after < last for call in committed),
        # Its own patient's message for that purpose reached the server while the call was waiting.
        "revocations_in_flight": sum(
            any(call.before <= t <= call.after for t in received_for[(call.patient_id, call.purpose_id)])
            for call in committed
        ),
        # Took more than 50 ms: most likely waited for a window holding the authorization (or for the CPU).
        "revocations_waited": sum(call.after - call.before > 0.05 for call in committed),
        "revocation_wait_ms_max": int(1000 * max((call.after - call.before for call in committed), default=0.0)),
        "expiries_during_send": sum(first < end < last for end in ends),
        "expiry_events": sum(not call.refused for call in history.expiry_events),
    }


def history_report(history: History, violations: list[Violation], *, limit: int = 400) -> str:
    """The failing history, readable: the violations, then every event of the run in time order."""
    t0 = history.t0
    lines = [f"{len(violations)} violation(s):", *(f"  {v}" for v in violations), "history (t+seconds):"]
    events: list[tuple[float, str]] = []
    by_message_id = {d.expected_message_id: d for d in history.deliveries}
    for message in history.received:
        delivery = by_message_id.get(message.message_id)
        name = f"delivery {delivery.id} (patient {delivery.patient_id}, purpose {delivery.purpose_id})" if delivery else message.message_id
        events.append((message.received_at, f"received {name}"))
    for call in history.revocations:
        outcome = f"refused: {call.refused}" if call.refused else f"revoked {list(call.revoked)}"
        events.append((call.before, f"{call.channel} revocation of patient {call.patient_id} purpose {call.purpose_id} called"))
        events.append((call.after, f"... returned ({outcome})"))
    for call in history.expiry_events:
        events.append((call.before, f"expiry event of authorization {call.authorization_id} (occurs t+{call.occurred_at - t0:.4f}) called"))
        events.append((call.after, f"... returned{' refused: ' + call.refused if call.refused else ''}"))
    for authorization in history.authorizations:
        if authorization.expires_at is not None and authorization.expires_at - t0 < 600:
            events.append((authorization.expires_at, f"authorization {authorization.id} expires"))
        if authorization.revoked_at is not None:
            events.append((authorization.revoked_at, f"authorization {authorization.id} revoked_at (db)"))
    for delivery in history.deliveries:
        if delivery.checked_at is not None:
            events.append((delivery.checked_at, f"delivery {delivery.id} checked_at (db)"))
        if delivery.sent_at is not None:
            events.append((delivery.sent_at, f"delivery {delivery.id} sent_at (db) under authorization {delivery.authorization_id}"))
    events.sort()
    lines += [f"  {t - t0:9.4f}  {text}" for t, text in events[:limit]]
    if len(events) > limit:
        lines.append(f"  ... {len(events) - limit} more")
    lines.append("deliveries at the end:")
    lines += [
        f"  {d.id}: campaign {d.campaign_id} patient {d.patient_id} purpose {d.purpose_id} {d.status} "
        f"{d.block_reason or ''} auth={d.authorization_id} dup={d.possible_duplicate} leased={d.lease_expires_at is not None}"
        for d in history.deliveries
    ]
    return "\n".join(lines)


# --- The recorder ---------------------------------------------------------------------------------------------


def _seconds(instant: datetime | None) -> float | None:
    return None if instant is None else instant.timestamp()


class Recorder:
    """The calls a run makes, each bracketed by the wall clock, from any thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self.revocations: list[RevocationCall] = []
        self.expiry_events: list[ExpiryEventCall] = []
        self.errors: list[str] = []

    def revocation(self, *, channel: str, patient_id: int, purpose_id: int, call) -> None:
        """Run `call()` (a revocation through `channel`, returning the revoked authorization ids) and record it.
        A ValidationError is the channel refusing (already ended, already revoked): recorded as refused."""
        from django.core.exceptions import ValidationError

        before = time.time()
        try:
            revoked = tuple(call())
            record = RevocationCall(channel, patient_id, purpose_id, before, time.time(), revoked=revoked)
        except ValidationError as error:
            record = RevocationCall(channel, patient_id, purpose_id, before, time.time(), refused="; ".join(error.messages))
        except Exception as error:  # noqa: BLE001 - the checker reports it
            self.error(f"{channel} revocation of patient {patient_id} purpose {purpose_id}: {error!r}")
            return
        with self._lock:
            self.revocations.append(record)

    def expiry_event(self, *, authorization_id: int, occurred_at: datetime) -> None:
        from django.core.exceptions import ValidationError

        from consent.services.authorizations import expiry_event_record

        before = time.time()
        try:
            expiry_event_record(actor=None, authorization_id=authorization_id, occurred_at=occurred_at, source="integration")
            record = ExpiryEventCall(authorization_id, occurred_at.timestamp(), before, time.time())
        except ValidationError as error:
            record = ExpiryEventCall(authorization_id, occurred_at.timestamp(), before, time.time(), refused="; ".join(error.messages))
        except Exception as error:  # noqa: BLE001 - the checker reports it
            self.error(f"expiry event of authorization {authorization_id}: {error!r}")
            return
        with self._lock:
            self.expiry_events.append(record)

    def error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)


def history_collect(
    *, window: float, campaign_ids: list[int], patient_ids: list[int], records, recorder: Recorder
) -> History:
    """Read what the database committed for these campaigns and patients, and what the sink received (`records`,
    campaigns.tests.smtp_server.ReceivedMessage), into a History."""
    from campaigns.models import Campaign, Delivery
    from campaigns.sending.messages import message_id_for
    from consent.models import Authorization

    deliveries = [
        DeliveryRow(
            id=d.pk,
            campaign_id=d.campaign_id,
            patient_id=d.patient_id,
            purpose_id=d.campaign.purpose_id,
            address=d.patient.email,
            status=d.status,
            block_reason=d.block_reason,
            authorization_id=d.authorization_id,
            message_id=d.message_id,
            expected_message_id=message_id_for(d.pk),
            checked_at=_seconds(d.checked_at),
            sent_at=_seconds(d.sent_at),
            lease_expires_at=_seconds(d.lease_expires_at),
            possible_duplicate=d.possible_duplicate,
        )
        for d in Delivery.objects.filter(campaign_id__in=campaign_ids).select_related("campaign", "patient").order_by("id")
    ]
    authorizations = []
    for a in Authorization.objects.filter(patient_id__in=patient_ids).select_related("revocation", "expiry_record").order_by("id"):
        revocation = getattr(a, "revocation", None)  # a missing reverse one-to-one is an AttributeError
        event = getattr(a, "expiry_record", None)
        authorizations.append(
            AuthorizationRow(
                id=a.pk,
                patient_id=a.patient_id,
                purpose_id=a.purpose_id,
                signed_at=a.signed_at.timestamp(),
                expires_at=_seconds(a.expires_at),
                event_occurred_at=_seconds(event.occurred_at) if event else None,
                event_recorded_at=_seconds(event.recorded_at) if event else None,
                revoked_at=_seconds(revocation.revoked_at) if revocation else None,
            )
        )
    campaigns = [
        CampaignRow(id=c.pk, purpose_id=c.purpose_id, status=c.status, finished=c.finished_at is not None)
        for c in Campaign.objects.filter(pk__in=campaign_ids).order_by("id")
    ]
    received = []
    for record in records:
        for recipient in record.recipients or ("",):
            received.append(Received(record.message_id, recipient, record.received_at, record.answered_at))
    return History(
        window=window,
        received=received,
        deliveries=deliveries,
        authorizations=authorizations,
        campaigns=campaigns,
        revocations=list(recorder.revocations),
        expiry_events=list(recorder.expiry_events),
        errors=list(recorder.errors),
    )


# --- The senders and the reconciler ---------------------------------------------------------------------------


class Senders:
    """Real Celery workers on the campaigns queue (campaigns.tests.worker), each with its own log file, and their
    supervisor: a thread that starts a replacement for each one that died, as an operator's supervisor would.
    `env`: the workers' settings (SEND_RATE_LIMIT, SEND_CHECK_WINDOW, ...)."""

    def __init__(self, sink, log_dir, *, env: dict[str, str], prefix: str):
        self.sink = sink
        self.log_dir = log_dir
        self.env = env
        self.prefix = prefix
        self.started: list = []  # (process, log path, log file)
        self.live: list = []  # the processes meant to be running, one per slot
        self.kills: list[str] = []  # how each kill landed: "at" a time, "in_data", "after_250"
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)

    def start(self):
        from campaigns.tests.worker import worker_start

        with self._lock:
            path = self.log_dir / f"{self.prefix}-{len(self.started) + 1}.log"
            log = open(path, "w")  # noqa: SIM115 - the worker writes to it until stop_all closes it
            worker = worker_start(
                self.sink, log, queues="campaigns", name=f"{self.prefix}-{len(self.started) + 1}", extra_env=self.env
            )
            self.started.append((worker, path, log))
            return worker

    def start_all(self, count: int) -> None:
        self.live = [self.start() for _ in range(count)]
        self._supervisor.start()

    def wait_ready(self, timeout: float = 60) -> None:
        """Until every live worker's log says it is ready to consume (Celery's "ready." line)."""
        deadline = time.monotonic() + timeout
        paths = {id(worker): path for worker, path, _ in self.started}
        while time.monotonic() < deadline:
            if all(" ready." in paths[id(worker)].read_text(errors="replace") for worker in self.live):
                return
            time.sleep(0.05)
        raise AssertionError(f"the workers did not start:\n{self.output()}")

    def kill(self, slot: int, how: str = "at") -> None:
        """SIGKILL the worker in this slot (campaigns.tests.worker.worker_kill); the supervisor replaces it."""
        import os
        import signal

        with self._lock:
            worker = self.live[slot % len(self.live)]
            if worker.poll() is None:
                os.kill(worker.pid, signal.SIGKILL)
                self.kills.append(how)

    def kill_sender_of(self, record, how: str) -> bool:
        """SIGKILL the worker whose SMTP connection carried this message (campaigns.tests.smtp_server record).
        No database access: safe in the SMTP server's event loop, while that worker waits for its 250."""
        from campaigns.tests.worker import worker_of_connection

        with self._lock:
            worker = worker_of_connection(self.live, record.peer[1])
            if worker is None:
                return False
            self.kill(self.live.index(worker), how)
            return True

    def _supervise(self) -> None:
        while not self._stop.wait(0.1):
            with self._lock:
                for slot, worker in enumerate(self.live):
                    if worker.poll() is not None:
                        self.live[slot] = self.start()

    def output(self) -> str:
        return "\n".join(
            f"--- {path.name} (exit {worker.returncode}) ---\n{path.read_text(errors='replace')[-4000:]}"
            for worker, path, _ in self.started
        )

    def stop_all(self) -> None:
        """Stop the supervisor, then every worker, then close the logs. SIGKILL: the run is over (every campaign
        finished, or the history says why not) and a warm shutdown would cost seconds an example."""
        from campaigns.tests.worker import worker_kill

        self._stop.set()
        if self._supervisor.is_alive():
            self._supervisor.join(10)
        for worker, _, log in self.started:
            worker_kill(worker)
            log.close()


class Reconciler:
    """campaigns.tasks.campaign_rewake_task every `every` seconds in a thread of its own, as beat runs it: it
    publishes a dispatch for each campaign with queued deliveries (a killed worker's, once their lease expired)
    and finishes a campaign left "sending" with nothing queued."""

    def __init__(self, recorder: Recorder, *, every: float):
        self.recorder = recorder
        self.every = every
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reconciler", daemon=True)

    def _run(self) -> None:
        from django.db import connection

        from campaigns.periodic import campaign_rewake_task

        try:
            while not self._stop.wait(self.every):
                campaign_rewake_task()
                self.runs += 1
        except Exception as error:  # noqa: BLE001 - the checker reports it
            self.recorder.error(f"reconciler: {error!r}")
        finally:
            connection.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)
