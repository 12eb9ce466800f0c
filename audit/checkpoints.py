"""Signed checkpoints of the chain head (R-SEC-INTEGRITY).

A checkpoint says "the chain had `sequence` events and the last one's hash was `head_hash`", signed with
HMAC-SHA256 under a key kept outside the database. A later audit_verify checks each checkpoint it can find
against the chain: a chain that ends before a checkpoint's sequence was cut (the newest events removed), and
an event at that sequence with another hash was rewritten, even by someone who recomputed every hash after it.

Keys: `AUDIT_CHECKPOINT_KEYS` (a Django setting, else the environment variable of that name), comma-separated,
each at least 32 characters; the first signs, all of them verify, so a key can be rotated while older
checkpoints still verify. Without it, a key derived from SECRET_KEY (also outside the database) signs: that is
for the demo and the tests only. hipaamail.settings.production refuses to start without a dedicated key, so that
rotating SECRET_KEY does not invalidate every earlier checkpoint; docs/backups.md says where to keep it.

An archive floor is the same signed statement with another first line ("hipaamail-audit-archive-floor-v1"):
"the events through `sequence` were archived outside the database, and the live chain continues from
`head_hash`" (docs/retention.md). audit_verify starts after the newest floor when the oldest events are gone;
a floor can only be signed with the key, so deleting a prefix of the chain is still detected.

When: audit.tasks signs the head every hour and verifies the whole chain every night (Celery beat), and alerts
the compliance officers and administrators when the verify finds a break.

Where they are kept: the append-only table audit_auditcheckpoint, and, when `AUDIT_CHECKPOINT_FILE` names a
file (setting or environment), one JSON line each appended there too. Someone able to bypass the triggers
could delete checkpoint rows along with the newest events; a copy outside the database (that file on other
storage, or the line audit_checkpoint prints, kept by the scheduler's log) still catches the cut:
`audit_verify --checkpoint-file` reads such copies.
"""
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.dateparse import parse_datetime

from audit.chain import time_text

DERIVED_KEY_ID = "secret-key-derived"
MIN_KEY_LENGTH = 32


def _configured(name: str) -> str:
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name, "")
    if isinstance(value, (list, tuple)):
        value = ",".join(value)
    return str(value or "")


def key_id(key: bytes) -> str:
    """A short public name for a key, so a checkpoint says which key signed it without revealing it."""
    return "k-" + hashlib.sha256(b"hipaamail-audit-checkpoint-key-id:" + key).hexdigest()[:16]


def checkpoint_keys() -> list[tuple[str, bytes]]:
    """(key id, key) pairs; the first one signs."""
    configured = [part.strip() for part in _configured("AUDIT_CHECKPOINT_KEYS").split(",") if part.strip()]
    for key in configured:
        if len(key) < MIN_KEY_LENGTH:
            raise ImproperlyConfigured(
                f"Each AUDIT_CHECKPOINT_KEYS key needs at least {MIN_KEY_LENGTH} characters (one is shorter)."
            )
    if configured:
        return [(key_id(key.encode()), key.encode()) for key in configured]
    if not settings.SECRET_KEY:
        raise ImproperlyConfigured("Set AUDIT_CHECKPOINT_KEYS (or SECRET_KEY) to sign audit checkpoints.")
    derived = hmac.new(settings.SECRET_KEY.encode(), b"hipaamail-audit-checkpoint-key", hashlib.sha256).digest()
    return [(DERIVED_KEY_ID, derived)]


def checkpoint_file() -> Path | None:
    configured = _configured("AUDIT_CHECKPOINT_FILE")
    return Path(configured) if configured else None


HEAD = "head"
ARCHIVE_FLOOR = "archive_floor"
# What each kind of statement says, as the first line of the signed message: a signature over one cannot be
# passed off as the other.
_PREAMBLES = {HEAD: "hipaamail-audit-checkpoint-v1", ARCHIVE_FLOOR: "hipaamail-audit-archive-floor-v1"}


def checkpoint_message(*, sequence: int, head_hash: str, created_at: datetime, kind: str = HEAD) -> bytes:
    return f"{_PREAMBLES[kind]}\n{sequence}\n{head_hash}\n{time_text(created_at)}".encode("ascii")


def checkpoint_sign(*, sequence: int, head_hash: str, created_at: datetime, kind: str = HEAD) -> tuple[str, str]:
    """(key id, signature) of the current signing key."""
    signing_id, key = checkpoint_keys()[0]
    message = checkpoint_message(sequence=sequence, head_hash=head_hash, created_at=created_at, kind=kind)
    return signing_id, hmac.new(key, message, hashlib.sha256).hexdigest()


def checkpoint_signature_valid(checkpoint) -> bool:
    kind = getattr(checkpoint, "kind", HEAD)
    if kind not in _PREAMBLES:
        return False
    message = checkpoint_message(
        sequence=checkpoint.sequence, head_hash=checkpoint.head_hash, created_at=checkpoint.created_at, kind=kind
    )
    for candidate_id, key in checkpoint_keys():
        if candidate_id == checkpoint.key_id:
            expected = hmac.new(key, message, hashlib.sha256).hexdigest()
            return hmac.compare_digest(expected, str(checkpoint.signature))
    return False


@dataclass(frozen=True)
class CheckpointCopy:
    """A checkpoint read back from a copy kept outside the database (same fields as the model)."""

    id: int | None
    created_at: datetime
    sequence: int
    head_hash: str
    key_id: str
    signature: str
    source: str
    kind: str = HEAD


def checkpoint_line(checkpoint) -> str:
    """The JSON line that audit_checkpoint prints and appends to the checkpoint file (an archive floor says so
    with "kind"; a line without it is a chain head, as every line written before floors existed)."""
    line = {
        "id": checkpoint.id,
        "created_at": time_text(checkpoint.created_at),
        "sequence": checkpoint.sequence,
        "head_hash": checkpoint.head_hash,
        "key_id": checkpoint.key_id,
        "signature": checkpoint.signature,
    }
    if getattr(checkpoint, "kind", HEAD) != HEAD:
        line["kind"] = checkpoint.kind
    return json.dumps(line, sort_keys=True)


def checkpoint_file_append(checkpoint, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="ascii") as handle:
        handle.write(checkpoint_line(checkpoint) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def checkpoint_file_read(path: Path) -> list[CheckpointCopy]:
    """Every checkpoint line of a copy; a line that is not one raises ValueError naming its number."""
    copies = []
    with path.open(encoding="ascii") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                created_at = parse_datetime(data["created_at"].replace("Z", "+00:00"))
                if created_at is None:
                    raise ValueError("created_at")
                copies.append(
                    CheckpointCopy(
                        id=data.get("id"),
                        created_at=created_at,
                        sequence=int(data["sequence"]),
                        head_hash=str(data["head_hash"]),
                        key_id=str(data["key_id"]),
                        signature=str(data["signature"]),
                        source=f"{path}:{number}",
                        kind=str(data.get("kind", HEAD)),
                    )
                )
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"{path}, line {number}: not a checkpoint ({type(error).__name__})") from None
    return copies
