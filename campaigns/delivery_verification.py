"""Deliveries held against the sealed batch events that recorded them (issue 11, item 5; R-SEC-INTEGRITY,
R-SEND-EVIDENCE).

The chain proves that no sealed audit event changed; a delivery row has no such guard (the sender updates it,
and anyone with the application's database access can). Each sending transaction writes one
`delivery.batch_dispatched` event listing its delivery ids by outcome and, for each sent one, the authorization
and the send time it recorded (campaigns.services). So a delivery forged after the fact — a blocked one made
`sent`, back-dated, under an old authorization that did cover it then — passes every check made from the rows
alone (the constraint, campaigns.selectors.coverage), but not this one: each delivery row is compared with its sealed
record, and each difference is named, by ids and codes only:

- outcome: the row's outcome is not the sealed one ("sent but sealed as blocked_revoked");
- authorization, sent_at, checked_at: a sent row whose evidence is not what its batch recorded (events written
  before per-message evidence record outcomes only: "legacy", compared on the outcome alone);
- campaign: the row belongs to another campaign than the batch's;
- unsealed: a sent row that no sealed batch lists ("sent but in no sealed batch");
- no_row: a sealed record whose delivery row is gone.

Only events the verify's walk found intact count (audit.verification.Scope). A sent row listed only by a batch
event the walk did not cover (committed after its snapshot, or not sealed yet) is *pending*, not a mismatch.
Deliveries blocked at launch or at cancel are in no batch (those events count them) and are not compared.
Where the oldest events are archived (docs/retention.md), sent rows older than the live chain's first event
are *archived*: their records are outside the database.

On PostgreSQL the comparison is set-based: the sealed batch events' lists are unnested
(jsonb_array_elements_text) and full-joined to the delivery table by id in one statement, so a million
deliveries are compared in seconds (bench/delivery_verify.py, docs/benchmarks.md). SQLite (the demo) compares
in Python. Registered with the audit app by campaigns.apps (the audit app imports no other app).
"""
from collections import defaultdict
from datetime import datetime

from django.db import connection, transaction

from audit import actions
from audit.models import AuditEvent
from audit.verification import CheckResult, Scope
from campaigns.models import Delivery
from campaigns.sending.dispatch import batch_event_time

NAME = "deliveries"
BATCH_ACTION = actions.DELIVERY_BATCH_DISPATCHED
# How many mismatches a verify names (printed, kept in the audit.verified event, shown by the summary); all are
# counted.
NAMED_LIMIT = 50

OUTCOME = "outcome"
AUTHORIZATION = "authorization"
SENT_AT = "sent_at"
CHECKED_AT = "checked_at"
CAMPAIGN = "campaign"
UNSEALED = "unsealed"
NO_ROW = "no_row"
# In the order a delivery's differences are named.
KINDS = (NO_ROW, UNSEALED, CAMPAIGN, OUTCOME, AUTHORIZATION, SENT_AT, CHECKED_AT)


def _time_text(moment: datetime | str | None) -> str | None:
    """As the batch event writes a time (UTC, microseconds, Z): an audit detail code."""
    if moment is None or isinstance(moment, str):
        return moment
    return batch_event_time(moment)


def mismatch_describe(entry: dict) -> str:
    """What differs, in words (ids, codes and times only): "sent but sealed as blocked_revoked"."""
    what, found, sealed = entry["what"], entry.get("found"), entry.get("sealed")
    if what == OUTCOME:
        return f"{found} but sealed as {sealed}"
    if what == AUTHORIZATION:
        return f"authorization {found if found is not None else 'none'} but sealed {sealed if sealed is not None else 'none'}"
    if what in (SENT_AT, CHECKED_AT):
        return f"{what} differs ({found or 'none'}, sealed {sealed or 'none'})"
    if what == CAMPAIGN:
        return f"in campaign {found} but sealed in campaign {sealed}"
    if what == UNSEALED:
        return "sent but in no sealed batch"
    if what == NO_ROW:
        return f"sealed as {sealed} but no delivery row"
    return what


def mismatch_line(entry: dict) -> str:
    return f"delivery {entry['delivery']} (campaign {entry['campaign']}): {mismatch_describe(entry)}"


class DeliveryCheck(CheckResult):
    """`compared`: delivery rows held against a sealed record (every row a covered batch lists, and every sent
    row); `mismatches`: differences, each one named (up to NAMED_LIMIT); `counts`: records (sealed records
    read), differing (delivery rows with at least one difference), legacy (sent records without per-message
    evidence), pending, archived."""

    def __init__(self, **kwargs):
        super().__init__(name=NAME, **kwargs)

    def count(self, key: str) -> int:
        return self.counts.get(key, 0)

    @property
    def pending(self) -> int:
        return self.count("pending")

    @property
    def legacy(self) -> int:
        return self.count("legacy")

    @property
    def differing(self) -> int:
        return self.count("differing")

    def summary(self) -> str:
        if self.error:
            return f"Deliveries: the comparison could not complete ({self.error})."
        records = self.count("records")
        text = (
            f"Deliveries: {self.compared:,} compared with their sealed batch records ({records:,} sealed "
            f"record{'' if records == 1 else 's'}), {self.mismatches:,} mismatch{'' if self.mismatches == 1 else 'es'}."
        )
        notes = []
        if self.legacy:
            notes.append(f"{self.legacy:,} recorded before per-message evidence (outcome compared only)")
        if self.pending:
            notes.append(f"{self.pending:,} sent in a batch not covered by this walk yet")
        if self.count("archived"):
            notes.append(f"{self.count('archived'):,} sent before the archived part of the trail")
        return text + (f" Not compared in full: {'; '.join(notes)}." if notes else "")

    def lines(self) -> list[str]:
        return [mismatch_line(entry) for entry in self.named]


# --- PostgreSQL: one set-based pass ---------------------------------------------------------------------------

# The row's outcome as a batch event names it.
_FOUND = "CASE d.status WHEN 'blocked' THEN 'blocked_' || d.block_reason ELSE d.status END"
# Each difference, as a condition on one row of `compared` below.
_CONDITIONS = {
    NO_ROW: "NOT c.has_row",
    UNSEALED: "c.has_row AND NOT c.has_record AND NOT c.pending AND NOT c.archived",
    CAMPAIGN: "c.has_row AND c.has_record AND c.campaign_id::text IS DISTINCT FROM c.sealed_campaign",
    OUTCOME: "c.has_row AND c.has_record AND c.found IS DISTINCT FROM c.sealed",
    AUTHORIZATION: (
        "c.has_row AND c.has_record AND c.found = 'sent' AND c.sealed = 'sent' AND NOT c.legacy"
        " AND c.authorization_id IS DISTINCT FROM c.sealed_authorization_id"
    ),
    SENT_AT: (
        "c.has_row AND c.has_record AND c.found = 'sent' AND c.sealed = 'sent' AND NOT c.legacy"
        " AND c.sent_at_text IS DISTINCT FROM c.sealed_sent_at_text"
    ),
    CHECKED_AT: (
        "c.has_row AND c.has_record AND c.found = 'sent' AND c.sealed = 'sent' AND NOT c.legacy"
        " AND c.checked_at IS DISTINCT FROM c.sealed_checked_at"
    ),
}

# %(after)s, %(through)s: the covered sequences; %(since)s: sent rows before it are archived (NULL: none).
# `batch` reads the covered batch events through the action index; `sealed` turns each into one row per
# delivery it lists (ROWS FROM zips "sent" with "sent_authorization" and "sent_at", which are in its order);
# `pending` lists the deliveries of batch events this walk does not cover (a handful: the last instant's);
# `compared` full-joins the records to the delivery rows by id, keeping the rows that have a record or are sent.
_COMPARED_SQL = f"""
WITH batch AS MATERIALIZED (
    SELECT e.object_id, e.details,
           e.details -> 'sent' AS sent,
           e.details -> 'sent_authorization' AS sent_authorization,
           e.details -> 'sent_at' AS sent_at,
           (e.details ->> 'checked_at')::timestamptz AS checked_at,
           NOT (e.details ? 'sent_authorization') AS legacy
      FROM audit_auditevent e
     WHERE e.action = %(action)s AND e.sequence > %(after)s AND e.sequence <= %(through)s
),
sealed AS (
    SELECT b.object_id AS campaign, 'sent'::text AS outcome, s.id::bigint AS delivery_id,
           s.authorization_id::bigint AS authorization_id, s.sent_at AS sent_at_text,
           b.checked_at, b.legacy
      FROM batch b
     CROSS JOIN LATERAL ROWS FROM (
               jsonb_array_elements_text(b.sent),
               jsonb_array_elements_text(b.sent_authorization),
               jsonb_array_elements_text(b.sent_at)
           ) AS s(id, authorization_id, sent_at)
     WHERE s.id IS NOT NULL
    UNION ALL
    SELECT b.object_id, k.key, x.id::bigint, NULL, NULL::text, NULL, false
      FROM batch b
     CROSS JOIN LATERAL jsonb_each(b.details) AS k(key, value)
     CROSS JOIN LATERAL jsonb_array_elements_text(k.value) AS x(id)
     WHERE k.key = 'failed' OR k.key LIKE 'blocked\\_%%'
),
pending AS MATERIALIZED (
    SELECT DISTINCT x.id::bigint AS delivery_id
      FROM audit_auditevent e
     CROSS JOIN LATERAL jsonb_each(e.details) AS k(key, value)
     CROSS JOIN LATERAL jsonb_array_elements_text(k.value) AS x(id)
     WHERE e.action = %(action)s AND (e.sequence IS NULL OR e.sequence > %(through)s)
       AND (k.key IN ('sent', 'failed') OR k.key LIKE 'blocked\\_%%')
),
compared AS (
    SELECT coalesce(d.id, s.delivery_id) AS delivery_id,
           d.id IS NOT NULL AS has_row,
           s.delivery_id IS NOT NULL AS has_record,
           d.campaign_id, s.campaign AS sealed_campaign,
           {_FOUND} AS found, s.outcome AS sealed,
           d.authorization_id, s.authorization_id AS sealed_authorization_id,
           d.sent_at, s.sent_at_text AS sealed_sent_at_text,
           to_char(d.sent_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS sent_at_text,
           d.checked_at, s.checked_at AS sealed_checked_at,
           coalesce(s.legacy, false) AS legacy,
           coalesce(s.delivery_id IS NULL AND d.id IN (SELECT delivery_id FROM pending), false) AS pending,
           coalesce(s.delivery_id IS NULL AND d.sent_at < %(since)s, false) AS archived
      FROM sealed s
      FULL JOIN campaigns_delivery d ON d.id = s.delivery_id
     WHERE s.delivery_id IS NOT NULL OR d.status = 'sent'
)
"""

_COUNTS_SQL = _COMPARED_SQL + f"""
SELECT count(*) FILTER (WHERE c.has_row),
       count(*) FILTER (WHERE c.has_record),
       count(*) FILTER (WHERE c.legacy AND c.sealed = 'sent'),
       count(*) FILTER (WHERE c.has_row AND NOT c.has_record AND c.pending),
       count(*) FILTER (WHERE c.has_row AND NOT c.has_record AND c.archived),
       count(*) FILTER (WHERE {' OR '.join(f'({condition})' for condition in _CONDITIONS.values())}),
       {' + '.join(f'count(*) FILTER (WHERE {condition})' for condition in _CONDITIONS.values())}
  FROM compared c
"""

_NAMED_SQL = _COMPARED_SQL + f"""
SELECT c.delivery_id, coalesce(c.campaign_id::text, c.sealed_campaign),
       array_remove(ARRAY[{', '.join(f"CASE WHEN {condition} THEN '{kind}' END" for kind, condition in _CONDITIONS.items())}], NULL),
       c.found, c.sealed, c.authorization_id, c.sealed_authorization_id,
       c.sent_at_text, c.sealed_sent_at_text, c.checked_at, c.sealed_checked_at, c.campaign_id, c.sealed_campaign
  FROM compared c
 WHERE {' OR '.join(f'({condition})' for condition in _CONDITIONS.values())}
 ORDER BY c.delivery_id
 LIMIT %(limit)s
"""


def _campaign_value(text):
    """A campaign id as the event holds it (text), as a number when it is one."""
    if isinstance(text, str) and text.isdigit():
        return int(text)
    return text


def _entry(kind: str, *, delivery_id, campaign, found, sealed) -> dict:
    return {"delivery": delivery_id, "campaign": _campaign_value(campaign), "what": kind, "found": found,
            "sealed": sealed}


def _entries(delivery_id, campaign, kinds, values: dict) -> list[dict]:
    """The named differences of one delivery, from its row's and its record's values."""
    pairs = {
        NO_ROW: (None, values["sealed"]),
        UNSEALED: (values["found"], None),
        CAMPAIGN: (values["campaign_id"], _campaign_value(values["sealed_campaign"])),
        OUTCOME: (values["found"], values["sealed"]),
        AUTHORIZATION: (values["authorization_id"], values["sealed_authorization_id"]),
        SENT_AT: (_time_text(values["sent_at"]), _time_text(values["sealed_sent_at"])),
        CHECKED_AT: (_time_text(values["checked_at"]), _time_text(values["sealed_checked_at"])),
    }
    return [
        _entry(kind, delivery_id=delivery_id, campaign=campaign, found=pairs[kind][0], sealed=pairs[kind][1])
        for kind in KINDS
        if kind in kinds
    ]


def _since(scope: Scope) -> datetime | None:
    """Where the oldest events are archived: when the live chain's first event happened (sent rows before it
    were recorded in the archived part)."""
    if scope.after_sequence <= 0:
        return None
    return (
        AuditEvent.objects.filter(sequence__gt=scope.after_sequence)
        .order_by("sequence")
        .values_list("occurred_at", flat=True)
        .first()
    )


def _verify_postgresql(scope: Scope) -> DeliveryCheck:
    params = {
        "action": BATCH_ACTION,
        "after": scope.after_sequence,
        "through": scope.through_sequence,
        "since": _since(scope),
        "limit": NAMED_LIMIT,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        if len(connection.atomic_blocks) == 1:  # our own transaction: both statements see one snapshot
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        # The join holds every delivery in a hash table: give it the memory to do so in one batch. The send
        # times are compared as the batch event writes them (to_char in UTC: cheaper than parsing a million
        # timestamps).
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute("SET LOCAL TimeZone = 'UTC'")
        cursor.execute(_COUNTS_SQL, params)
        compared, records, legacy, pending, archived, differing, mismatches = cursor.fetchone()
        named: list[dict] = []
        if mismatches:
            cursor.execute(_NAMED_SQL, params)
            columns = ("found", "sealed", "authorization_id", "sealed_authorization_id", "sent_at",
                       "sealed_sent_at", "checked_at", "sealed_checked_at", "campaign_id", "sealed_campaign")
            # sent_at and sealed_sent_at come as text (see _COMPARED_SQL): they are what _time_text writes.
            for delivery_id, campaign, kinds, *values in cursor.fetchall():
                named += _entries(delivery_id, campaign, set(kinds), dict(zip(columns, values)))
    return DeliveryCheck(
        compared=compared,
        mismatches=mismatches,
        named=named[:NAMED_LIMIT],
        counts={"records": records, "differing": differing, "legacy": legacy, "pending": pending,
                "archived": archived},
    )


# --- Other databases (the SQLite demo): the same rules in Python ----------------------------------------------


def _parse_time(text) -> datetime | None:
    if not isinstance(text, str):
        return None
    return datetime.fromisoformat(text)


def _ids(values) -> list[int]:
    return [int(value) for value in values] if isinstance(values, list) else []


def _records(details: dict, campaign: str) -> list[dict]:
    """One record per delivery an event lists, as `sealed` above makes them."""
    records = []
    legacy = "sent_authorization" not in details
    authorizations, times = details.get("sent_authorization") or [], details.get("sent_at") or []
    checked_at = _parse_time(details.get("checked_at"))
    for index, delivery_id in enumerate(_ids(details.get("sent"))):
        records.append({
            "delivery_id": delivery_id, "campaign": campaign, "sealed": "sent", "legacy": legacy,
            "authorization_id": int(authorizations[index]) if index < len(authorizations) else None,
            "sent_at": _parse_time(times[index]) if index < len(times) else None,
            "checked_at": checked_at,
        })
    for key, value in details.items():
        if key == "failed" or key.startswith("blocked_"):
            records += [
                {"delivery_id": delivery_id, "campaign": campaign, "sealed": key, "legacy": False,
                 "authorization_id": None, "sent_at": None, "checked_at": None}
                for delivery_id in _ids(value)
            ]
    return records


def _kinds(values: dict) -> set[str]:
    """_CONDITIONS, in Python."""
    has_row, has_record = values["has_row"], values["has_record"]
    kinds = set()
    if not has_row:
        return {NO_ROW}
    if not has_record:
        return set() if values["pending"] or values["archived"] else {UNSEALED}
    if str(values["campaign_id"]) != str(values["sealed_campaign"]):
        kinds.add(CAMPAIGN)
    if values["found"] != values["sealed"]:
        kinds.add(OUTCOME)
    elif values["found"] == "sent" and not values["legacy"]:
        if values["authorization_id"] != values["sealed_authorization_id"]:
            kinds.add(AUTHORIZATION)
        if values["sent_at"] != values["sealed_sent_at"]:
            kinds.add(SENT_AT)
        if values["checked_at"] != values["sealed_checked_at"]:
            kinds.add(CHECKED_AT)
    return kinds


def _verify_python(scope: Scope) -> DeliveryCheck:
    with transaction.atomic():
        batches = AuditEvent.objects.filter(action=BATCH_ACTION)
        by_delivery: dict[int, list[dict]] = defaultdict(list)
        pending: set[int] = set()
        for sequence, object_id, details in batches.values_list("sequence", "object_id", "details").iterator(500):
            records = _records(details or {}, object_id)
            if sequence is not None and scope.after_sequence < sequence <= scope.through_sequence:
                for record in records:
                    by_delivery[record["delivery_id"]].append(record)
            elif sequence is None or sequence > scope.through_sequence:
                pending.update(record["delivery_id"] for record in records)
        since = _since(scope)
        rows = Delivery.objects.order_by("id").values_list(
            "id", "campaign_id", "status", "block_reason", "authorization_id", "sent_at", "checked_at"
        )
        result = DeliveryCheck(counts={key: 0 for key in ("records", "differing", "legacy", "pending", "archived")})
        result.counts["records"] = sum(len(records) for records in by_delivery.values())
        named: list[tuple[int, list[dict]]] = []
        seen: set[int] = set()

        def compare(delivery_id, row: dict | None, record: dict | None) -> None:
            values = {
                "has_row": row is not None, "has_record": record is not None,
                "campaign_id": row["campaign_id"] if row else None,
                "sealed_campaign": record["campaign"] if record else None,
                "found": row["found"] if row else None, "sealed": record["sealed"] if record else None,
                "authorization_id": row["authorization_id"] if row else None,
                "sealed_authorization_id": record["authorization_id"] if record else None,
                "sent_at": row["sent_at"] if row else None, "sealed_sent_at": record["sent_at"] if record else None,
                "checked_at": row["checked_at"] if row else None,
                "sealed_checked_at": record["checked_at"] if record else None,
                "legacy": record["legacy"] if record else False,
                "pending": record is None and delivery_id in pending,
                "archived": record is None and row is not None and since is not None and row["sent_at"] is not None
                and row["sent_at"] < since,
            }
            if row is not None:
                result.compared += 1
            if values["legacy"] and values["sealed"] == "sent":
                result.counts["legacy"] += 1
            if row is not None and record is None:
                result.counts["pending"] += values["pending"]
                result.counts["archived"] += values["archived"]
            kinds = _kinds(values)
            if kinds:
                result.counts["differing"] += 1
                result.mismatches += len(kinds)
                campaign = values["campaign_id"] if row is not None else values["sealed_campaign"]
                named.append((delivery_id, _entries(delivery_id, campaign, kinds, values)))

        for pk, campaign_id, status, reason, authorization_id, sent_at, checked_at in rows.iterator(2000):
            records = by_delivery.get(pk)
            if not records and status != Delivery.Status.SENT:
                continue
            seen.add(pk)
            found = f"blocked_{reason}" if status == Delivery.Status.BLOCKED else status
            row = {"campaign_id": campaign_id, "found": found, "authorization_id": authorization_id,
                   "sent_at": sent_at, "checked_at": checked_at}
            for record in records or [None]:
                compare(pk, row, record)
        for delivery_id, records in by_delivery.items():
            if delivery_id not in seen:
                for record in records:
                    compare(delivery_id, None, record)
    named.sort(key=lambda item: item[0])
    result.named = [entry for _, entries in named for entry in entries][:NAMED_LIMIT]
    return result


def deliveries_verify(*, through_sequence: int, after_sequence: int = 0) -> DeliveryCheck:
    """Compare every delivery row with the sealed batch records after `after_sequence` through
    `through_sequence`; see the module doc."""
    scope = Scope(after_sequence=after_sequence, through_sequence=through_sequence)
    if connection.vendor == "postgresql":
        return _verify_postgresql(scope)
    return _verify_python(scope)


def deliveries_check(*, scope: Scope) -> DeliveryCheck:
    """The verifier campaigns.apps registers with audit.verification."""
    return deliveries_verify(through_sequence=scope.through_sequence, after_sequence=scope.after_sequence)
