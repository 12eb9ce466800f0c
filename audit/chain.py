"""The hash chain: how an event is encoded and hashed, and how a chain is checked.

Each sealed event carries `prev_hash` (the hash of the event before it in the chain, GENESIS for the first)
and `hash` = SHA-256 (hex) of its canonical encoding, the UTF-8 bytes of

    VERSION \t sequence \t occurred_at \t actor_id \t actor_role \t action \t object_type \t object_id
            \t patient_id \t ip \t request_id \t details \t prev_hash

where each value is written the way PostgreSQL's COPY text format writes it, in UTC: NULL as \\N, a time as
`2026-11-25 23:26:59.537665+00` (trailing zeros of the fraction dropped), details as PostgreSQL's canonical
jsonb text (`{"a": 1, "ids": [3, 1]}`, keys ordered by length, then bytes), and backslash, tab, newline and
the other COPY escapes escaped. Why this form: the verifier streams the table with `COPY … TO STDOUT` and
hashes each line as PostgreSQL wrote it, without turning it into Python values first — that is what lets it
check hundreds of thousands of events per second (docs/adr/0004-audit-hash-chain.md). Tab-separated fields
with tabs escaped inside them cannot be confused with one another.

`content_text` writes the same bytes from Python values (the SQLite demo's sealer and verifier use it, and a
PostgreSQL test holds it equal to what COPY writes). Pure functions only: the database work is in
audit.services (sealing) and audit.selectors (reading).
"""
import hashlib
import itertools
import json
from binascii import hexlify
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

VERSION = b"hipaamail-audit-v1"
GENESIS = "0" * 64
# The columns an event's hash covers besides its sequence and prev_hash, in encoding order.
CONTENT_COLUMNS = (
    "occurred_at", "actor_id", "actor_role", "action", "object_type", "object_id", "patient_id", "ip",
    "request_id", "details",
)
NULL = "\\N"
# PostgreSQL's COPY text format escapes these (CopyAttributeOutText); every other character is written as is.
_COPY_ESCAPES = str.maketrans(
    {"\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
)
_json_string = json.JSONEncoder(ensure_ascii=False).encode


def copy_text(value: str) -> str:
    return value.translate(_COPY_ESCAPES)


def time_text(moment: datetime) -> str:
    """An instant the way PostgreSQL writes a timestamptz with TimeZone UTC and DateStyle ISO."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "+00"


def jsonb_text(value) -> str:
    """A JSON value the way PostgreSQL writes jsonb: object keys ordered by byte length, then bytes;
    ", " between items and ": " after keys. Details hold only null, booleans, integers, strings, lists
    and objects (audit.services refuses anything else)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(jsonb_text(item) for item in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda key: (len(key.encode()), key.encode()))
        return "{" + ", ".join(f"{_json_string(key)}: {jsonb_text(value[key])}" for key in keys) + "}"
    raise TypeError(f"jsonb_text: {type(value).__name__} is not a value audit details hold")


def _field(value) -> str:
    if value is None:
        return NULL
    return copy_text(str(value))


def content_text(
    *, occurred_at, actor_id, actor_role, action, object_type, object_id, patient_id, ip, request_id, details
) -> bytes:
    """The content fields of an event, tab-separated, exactly as COPY writes them (see the module doc)."""
    if isinstance(details, str):
        details = json.loads(details)
    fields = [
        time_text(occurred_at),
        _field(actor_id),
        _field(actor_role),
        _field(action),
        _field(object_type),
        _field(object_id),
        _field(patient_id),
        _field(ip),
        _field(request_id),
        copy_text(jsonb_text(details)),
    ]
    return "\t".join(fields).encode("utf-8")


def event_hash(*, sequence: int, content: bytes, prev_hash: str) -> str:
    encoded = b"%s\t%d\t%s\t%s" % (VERSION, sequence, content, prev_hash.encode("ascii"))
    return hashlib.sha256(encoded).hexdigest()


def walk_line(*, sequence: int, content: bytes, prev_hash: str, hash: str) -> bytes:
    """One line as the verifier reads it: sequence, content, prev_hash, hash, tab-separated."""
    return b"%d\t%s\t%s\t%s" % (sequence, content, prev_hash.encode("ascii"), hash.encode("ascii"))


# --- Checking a chain -------------------------------------------------------------------------------------

# Why a chain breaks, as short codes (printed by audit_verify, kept in the audit.verified event).
HASH_MISMATCH = "hash_mismatch"  # the event's content or hash was changed after sealing
LINK_MISMATCH = "link_mismatch"  # prev_hash is not the hash of the event before it: rows swapped or removed
MISSING = "missing"  # a sequence number is absent: an event was deleted
TRUNCATED = "truncated"  # the chain ends before a signed checkpoint: the newest events were cut
CHECKPOINT_MISMATCH = "checkpoint_mismatch"  # the event at a checkpoint's sequence is not the one signed
CHECKPOINT_FORGED = "checkpoint_forged"  # a checkpoint whose signature does not verify with our keys
MALFORMED = "malformed"  # a row that does not have the chain's shape (a sequence that is not a number, say)

# In English, for the command line and the standalone stretch verifier (docs/retention.md), which run without
# Django; the pages and the alert say them through audit.sentences.break_meaning.
DESCRIPTIONS = {
    HASH_MISMATCH: "the event's stored hash does not match its content: the event was changed after sealing",
    LINK_MISMATCH: "the event does not follow the one before it: events were removed, reordered or swapped",
    MISSING: "no event has this sequence number: an event was deleted",
    TRUNCATED: "the chain ends before a signed checkpoint: the newest events were removed",
    CHECKPOINT_MISMATCH: "the event at this sequence is not the one a signed checkpoint recorded",
    CHECKPOINT_FORGED: "a checkpoint's signature does not verify with the configured keys",
    MALFORMED: "the stored row does not have the shape of a sealed event",
}


@dataclass(frozen=True)
class Break:
    sequence: int
    reason: str
    found: int | None = None  # the sequence found instead, for MISSING
    checkpoint_id: int | None = None

    def describe(self) -> str:
        text = f"sequence {self.sequence}: {DESCRIPTIONS[self.reason]}"
        if self.found is not None:
            text += f" (the next event found is sequence {self.found})"
        if self.checkpoint_id is not None:
            text += f" (checkpoint #{self.checkpoint_id})"
        return text


@dataclass
class WalkResult:
    events: int = 0
    last_sequence: int = 0
    last_hash: str = GENESIS
    first_break: Break | None = None
    checkpoints_checked: int = 0
    first_prev_hash: str = ""
    checkpoints: list = field(default_factory=list)
    archive_floor: object | None = None  # the signed floor the walk started after, when the oldest events are archived

    @property
    def ok(self) -> bool:
        return self.first_break is None


def chain_walk(
    lines: Iterable[bytes],
    *,
    checkpoints: Mapping[int, list] | None = None,
    first_sequence: int = 1,
    previous: str | None = GENESIS,
    final: bool = True,
) -> WalkResult:
    """Check sealed events in sequence order; stop at the first break.

    `lines` yields one bytes line per event, "sequence\\tcontent…\\tprev_hash\\thash" (walk_line; what
    `COPY (SELECT sequence, <content columns>, prev_hash, hash …) TO STDOUT` writes, without the newline).
    `checkpoints` maps a sequence to the signed checkpoints (objects with `id` and `head_hash`) taken there;
    each is checked against the event found there and, when this is the `final` stretch of the chain, one
    beyond its end means the chain was cut.

    A stretch of the chain can be walked on its own (the verifier walks several at once): it starts at
    `first_sequence`, and with `previous=None` its first link is taken as found (`first_prev_hash`), for the
    caller to hold against the end of the stretch before it.

    This loop is the verifier's whole cost, so it is flat: per event one split, three comparisons and one
    SHA-256 of the line as stored.
    """
    checkpoints = checkpoints or {}
    result = WalkResult(last_sequence=first_sequence - 1, last_hash=previous or "")
    expected = first_sequence
    prefix = VERSION + b"\t"
    sha256 = hashlib.sha256
    checked = 0
    iterator = iter(lines)
    if previous is None:
        for line in iterator:
            body = line.rpartition(b"\t")[0]
            result.first_prev_hash = body[-64:].decode("ascii", "replace")
            iterator = itertools.chain([line], iterator)
            break
        previous = result.first_prev_hash or ""
    else:
        result.first_prev_hash = previous
    previous = previous.encode("ascii")
    for line in iterator:
        body, _, stored = line.rpartition(b"\t")
        head = body[: body.find(b"\t")]
        if head != b"%d" % expected:
            try:
                found = int(head)
            except ValueError:
                result.first_break = Break(expected, MALFORMED)
            else:
                result.first_break = (
                    Break(expected, MISSING, found=found) if found > expected else Break(expected, LINK_MISMATCH)
                )
            break
        if body[-64:] != previous or body[-65:-64] != b"\t":
            result.first_break = Break(expected, LINK_MISMATCH)
            break
        if hexlify(sha256(prefix + body).digest()) != stored:
            result.first_break = Break(expected, HASH_MISMATCH)
            break
        if expected in checkpoints:
            wrong = [c for c in checkpoints[expected] if c.head_hash.encode("ascii") != stored]
            checked += len(checkpoints[expected]) - len(wrong)
            if wrong:
                result.first_break = Break(expected, CHECKPOINT_MISMATCH, checkpoint_id=wrong[0].id)
                break
        previous = stored
        expected += 1
    result.events = expected - first_sequence
    result.last_sequence = expected - 1
    result.last_hash = previous.decode("ascii")
    result.checkpoints_checked = checked
    if final and result.first_break is None:
        chain_end_check(result, checkpoints)
    return result


def chain_end_check(result: WalkResult, checkpoints: Mapping[int, list]) -> None:
    """A checkpoint signed beyond the last event means the newest events were removed."""
    beyond = sorted(sequence for sequence in checkpoints if sequence > result.last_sequence)
    if beyond:
        result.first_break = Break(result.last_sequence + 1, TRUNCATED, checkpoint_id=checkpoints[beyond[-1]][-1].id)
