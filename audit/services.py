"""Writing the audit trail. Callers write the event in the same transaction as the change it records.

`audit_record` only appends an unsealed row: it takes no lock, so a sending worker never queues on the audit
chain. After the caller's transaction commits, `audit_seal` (one sealer at a time) gives each committed event
its sequence and hashes, in the order the commits became visible — the way Certificate Transparency logs
sequence their entries (docs/adr/0004-audit-hash-chain.md).
"""
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone, translation

from audit import actions, chain, checkpoints, context, permissions, selectors, sentences, verification
from audit.mail import staff_mail_send
from audit.models import AuditCheckpoint, AuditEvent

logger = logging.getLogger(__name__)


# Details hold ids, counts and codes. Free text (names, addresses, emails) cannot pass this shape,
# which keeps PHI out of the audit trail by construction (R-NO-PHI-LEAK).
_CODE = re.compile(r"^[A-Za-z0-9_.:/\-]{0,64}$")


class AuditEventInvalid(ValidationError):
    """A caller's mistake in the event it records (details hold ids, counts and codes; patient_id is a number),
    never shown to a person: in English, like the log lines, and so not translated."""


def _check_detail_value(key: str, value: Any) -> None:
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, str) and _CODE.match(value):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_detail_value(key, item)
        return
    if isinstance(value, dict):
        _check_details(value)
        return
    raise AuditEventInvalid(f"Audit detail {key!r} must be an id, a count or a code.")


def _check_details(details: dict[str, Any]) -> None:
    for key, value in details.items():
        if not _CODE.match(str(key)):
            raise AuditEventInvalid("Audit detail keys must be codes.")
        _check_detail_value(key, value)


def role_of(user) -> str:
    """The role a user acts in: their group (marketer, compliance officer, administrator), else a kind."""
    if user is None or not getattr(user, "is_authenticated", False):
        return actions.SYSTEM if user is None else actions.ANONYMOUS
    names = sorted(user.groups.values_list("name", flat=True))
    if names:
        return ",".join(names)[:40]
    return actions.SUPERUSER if user.is_superuser else actions.USER


def audit_record(
    *,
    actor=None,
    actor_role: str = "",
    action: str,
    object_type: str = "",
    object_id: object = "",
    patient_id: int | None = None,
    details: dict[str, Any] | None = None,
    ip: str | None = None,
    request_id: str = "",
) -> AuditEvent:
    """Append one event. `actor` is a user or None (then say system, patient or anonymous in actor_role).

    `patient_id` names the patient the event concerns, when it concerns exactly one (the id, never an
    identifier): the patient's history page reads it. The event is chained after the caller's commit."""
    if action not in actions.ACTIONS:
        raise ValueError(f"{action!r} is not an audit action: every action is a constant in audit/actions.py.")
    details = details or {}
    if "patient" in details or "patient_id" in details:
        raise ValueError("The patient an event concerns goes in patient_id, not in its details.")
    request = context.current()
    if request.api_key_id is not None and actor is None:
        # A change made through the integration API is the key's, whatever kind the service would name.
        actor_role = f"{actions.API_KEY_PREFIX}{request.api_key_id}"
    if not actor_role:
        actor_role = role_of(actor)
    if patient_id is not None and (isinstance(patient_id, bool) or not isinstance(patient_id, int)):
        raise AuditEventInvalid("An audit event's patient_id is a patient's numeric id.")
    _check_details(details)
    event = AuditEvent(
        actor=actor if actor is not None and getattr(actor, "pk", None) else None,
        actor_role=actor_role,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        patient_id=patient_id,
        details=details,
        ip=ip or request.ip,
        request_id=request_id or request.request_id,
    )
    event.full_clean(exclude=["actor", "occurred_at"])
    event.save(force_insert=True)
    _seal_after_commit_schedule()
    return event


# --- The sealer -------------------------------------------------------------------------------------------

SEAL_BATCH = 1000
# One sealer at a time on PostgreSQL: a transaction-level advisory lock on this key ("audit" in ASCII).
SEAL_LOCK_KEY = 0x6175646974
_TABLE = AuditEvent._meta.db_table


def _seal_after_commit_schedule() -> None:
    """Seal once the caller's transaction commits: one callback per transaction, however many events."""
    if not getattr(settings, "HIPAAMAIL_AUDIT_SEAL_ON_COMMIT", True):
        return
    if connection.in_atomic_block and any(
        callback is _seal_after_commit for _, callback, _ in connection.run_on_commit
    ):
        return
    transaction.on_commit(_seal_after_commit)


def _seal_after_commit() -> None:
    try:
        audit_seal()
    except DatabaseError as error:
        # The events are committed and stay unsealed until the next seal (any next event, audit_verify or
        # audit_checkpoint); the caller's work is done and must not fail for this.
        logger.warning("audit: sealing deferred (%s)", type(error).__name__)


def audit_seal() -> int:
    """Chain every committed unsealed event; return how many were sealed.

    Any process may call it at any time. On PostgreSQL one seals at a time (an advisory lock, tried, never
    waited for): a caller that finds it taken returns at once, because the holder looks for unsealed events
    again after its commit, and so sees every event committed before that look. On SQLite the transaction
    takes the database's write lock (transaction_mode IMMEDIATE), which serialises sealers the same way.
    """
    total = 0
    while True:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    # One round trip: the lock, and this transaction's settings. COPY must write times as the
                    # chain encodes them. The commit need not wait for the disk: a seal lost in a crash leaves
                    # its events unsealed, and the next seal chains them again; whatever is shown outside
                    # (a checkpoint, a report) is written by a later synchronous commit, which makes every
                    # seal before it durable too.
                    cursor.execute(
                        "SELECT pg_try_advisory_xact_lock(%s), set_config('TimeZone', 'UTC', true),"
                        " set_config('DateStyle', 'ISO, MDY', true), set_config('synchronous_commit', 'off', true)",
                        [SEAL_LOCK_KEY],
                    )
                    if not cursor.fetchone()[0]:
                        return total
            sealed = _seal_batch()
        total += sealed
        if sealed < SEAL_BATCH and not AuditEvent.objects.filter(sequence__isnull=True).exists():
            return total
        if sealed == 0 and connection.in_atomic_block:
            return total  # inside a caller's transaction: nothing more will become visible to it


def _chain_head() -> tuple[int, str]:
    row = (
        AuditEvent.objects.filter(sequence__isnull=False)
        .order_by("-sequence")
        .values_list("sequence", "hash")
        .first()
    )
    return row if row else (0, chain.GENESIS)


_CONTENT_SQL = ", ".join(chain.CONTENT_COLUMNS)


def _unsealed_contents() -> list[tuple[int, bytes]]:
    """(id, content bytes) of up to SEAL_BATCH committed unsealed events, oldest id first."""
    if connection.vendor == "postgresql":
        # The content exactly as COPY writes it: the same bytes the verifier will hash (audit.chain).
        with connection.cursor() as cursor:  # audit_seal set TimeZone and DateStyle for this transaction
            raw = cursor.cursor
            data = bytearray()
            with raw.copy(
                f"COPY (SELECT id, {_CONTENT_SQL} FROM {_TABLE} WHERE sequence IS NULL ORDER BY id LIMIT {SEAL_BATCH})"
                " TO STDOUT"
            ) as copy:
                for block in copy:
                    data += block
        rows = []
        for line in bytes(data).split(b"\n"):
            if line:
                event_id, _, content = line.partition(b"\t")
                rows.append((int(event_id), content))
        return rows
    return [
        (row[0], chain.content_text(**dict(zip(chain.CONTENT_COLUMNS, row[1:]))))
        for row in AuditEvent.objects.filter(sequence__isnull=True)
        .order_by("id")
        .values_list("id", *chain.CONTENT_COLUMNS)[:SEAL_BATCH]
    ]


def _seal_batch() -> int:
    sequence, previous = _chain_head()
    sealed: list[tuple[int, int, str, str]] = []
    for event_id, content in _unsealed_contents():
        sequence += 1
        digest = chain.event_hash(sequence=sequence, content=content, prev_hash=previous)
        sealed.append((event_id, sequence, previous, digest))
        previous = digest
    if not sealed:
        return 0
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            ids, sequences, prev_hashes, hashes = (list(column) for column in zip(*sealed))
            cursor.execute(
                f"""
                UPDATE {_TABLE} AS e SET sequence = v.sequence, prev_hash = v.prev_hash, hash = v.hash
                  FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[]) AS v(id, sequence, prev_hash, hash)
                 WHERE e.id = v.id AND e.sequence IS NULL
                """,
                [ids, sequences, prev_hashes, hashes],
            )
        else:
            cursor.executemany(
                f"UPDATE {_TABLE} SET sequence = %s, prev_hash = %s, hash = %s WHERE id = %s AND sequence IS NULL",
                [(seq, prev, digest, event_id) for event_id, seq, prev, digest in sealed],
            )
        if cursor.rowcount != len(sealed):
            raise DatabaseError("audit: an event was sealed by someone else meanwhile; sealing again")
    return len(sealed)


# --- Checkpoints and verification records -----------------------------------------------------------------


def _checkpoint_store(*, sequence: int, head_hash: str, kind: str, action: str) -> AuditCheckpoint:
    """Sign and keep one statement about the chain (table, and the checkpoint file when one is configured),
    recording it in the trail; the event recording it is chained after it."""
    with transaction.atomic():
        created_at = timezone.now()
        key_id, signature = checkpoints.checkpoint_sign(
            sequence=sequence, head_hash=head_hash, created_at=created_at, kind=kind
        )
        checkpoint = AuditCheckpoint(
            created_at=created_at, sequence=sequence, head_hash=head_hash, key_id=key_id, signature=signature,
            kind=kind,
        )
        checkpoint.full_clean()
        checkpoint.save(force_insert=True)
        audit_record(
            actor=None,
            actor_role=actions.SYSTEM,
            action=action,
            object_type="audit_checkpoint",
            object_id=checkpoint.pk,
            details={"sequence": sequence, "key_id": key_id},
        )
    path = checkpoints.checkpoint_file()
    if path is not None:
        checkpoints.checkpoint_file_append(checkpoint, path)
    return checkpoint


def audit_checkpoint_create() -> AuditCheckpoint:
    """Seal what is committed, then sign the chain head and keep the signature. Returns the AuditCheckpoint."""
    audit_seal()
    sequence, head_hash = _chain_head()
    return _checkpoint_store(
        sequence=sequence, head_hash=head_hash, kind=checkpoints.HEAD, action=actions.AUDIT_CHECKPOINTED
    )


class ArchiveFloorRefused(Exception):
    """The sequence given does not name a sealed event of this chain."""


def audit_archive_floor_create(*, through_sequence: int) -> AuditCheckpoint:
    """Sign "events through `through_sequence` are archived outside the database; the live chain continues
    from that event's hash" (docs/retention.md, before a month's partition is dropped). After the drop,
    audit_verify starts from this floor instead of reporting the missing prefix. Refused unless a sealed
    event has that sequence: the floor takes its hash from the chain itself."""
    audit_seal()
    row = AuditEvent.objects.filter(sequence=through_sequence).values_list("hash", flat=True).first()
    if through_sequence < 1 or row is None:
        raise ArchiveFloorRefused(f"No sealed audit event has sequence {through_sequence}.")
    return _checkpoint_store(
        sequence=through_sequence, head_hash=row, kind=checkpoints.ARCHIVE_FLOOR, action=actions.AUDIT_ARCHIVE_FLOOR_SIGNED
    )


def audit_verification_record(
    *, result, checks: Iterable[verification.CheckResult] = (), actor=None
) -> AuditEvent:
    """Keep the outcome of a verify in the trail itself (the audit pages and the compliance summary show the
    newest): the chain's (`ok` says whether the chain is intact) and, under `checks`, each registered
    verifier's (audit.verification), by name."""
    first_break = result.first_break
    details = {
        "ok": result.ok,
        "events": result.events,
        "through_sequence": result.last_sequence,
        "checkpoints": result.checkpoints_checked,
        "break_sequence": first_break.sequence if first_break else None,
        "break_reason": first_break.reason if first_break else None,
        "archived_through": result.archive_floor.sequence if result.archive_floor is not None else 0,
    }
    checks = list(checks)
    if checks:
        details["checks"] = {check.name: check.details() for check in checks}
    return audit_record(
        actor=actor, actor_role="" if actor else actions.SYSTEM, action=actions.AUDIT_VERIFIED, details=details
    )


@dataclass(frozen=True)
class AuditVerification:
    """What a verify found: the walk's result, how long the walk took, how many committed events it could not
    cover because they were not sealed yet, and what each registered verifier found over the events it did
    cover (audit.verification), with how long they took."""

    result: chain.WalkResult
    seconds: float
    unsealed: int
    checks: tuple[verification.CheckResult, ...] = ()
    checks_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """The chain is intact and every check found its records as sealed."""
        return self.result.ok and all(check.ok for check in self.checks)


class CheckpointCopyUnreadable(Exception):
    """A checkpoint file kept outside the database is missing or holds a line that is not a checkpoint."""


def audit_checkpoint_copies_read(paths: Iterable[Path] = ()) -> list[checkpoints.CheckpointCopy]:
    """The checkpoints kept outside the database: each file in `paths`, plus AUDIT_CHECKPOINT_FILE when it exists.
    Raises CheckpointCopyUnreadable for a missing file in `paths` or a line that is not a checkpoint."""
    paths = list(paths)
    configured = checkpoints.checkpoint_file()
    if configured is not None and configured.exists() and configured not in paths:
        paths.append(configured)
    copies: list[checkpoints.CheckpointCopy] = []
    for path in paths:
        try:
            copies += checkpoints.checkpoint_file_read(path)
        except FileNotFoundError:
            raise CheckpointCopyUnreadable(f"No checkpoint file at {path}.") from None
        except ValueError as error:
            raise CheckpointCopyUnreadable(str(error)) from None
    return copies


def audit_chain_verify(
    *,
    checkpoint_files: Iterable[Path] = (),
    workers: int = selectors.VERIFY_WORKERS,
    read_only: bool = False,
    actor=None,
) -> AuditVerification:
    """Seal what is committed, walk the whole chain against every signed checkpoint known (the table's, the
    configured file's, `checkpoint_files`), then run every registered verifier (audit.verification: the other
    apps' rows against the sealed events that recorded them) over the events the walk found intact, and keep the
    outcome as an audit.verified event. `read_only` (a read replica, a restored copy) neither seals nor records.
    What `manage.py audit_verify` and the scheduled audit.tasks.audit_verify_task both run (R-SEC-INTEGRITY)."""
    copies = audit_checkpoint_copies_read(checkpoint_files)
    if not read_only:
        audit_seal()
    started = time.perf_counter()
    result = selectors.audit_chain_walk(extra_checkpoints=copies, workers=max(1, workers))
    seconds = time.perf_counter() - started
    unsealed = AuditEvent.objects.filter(sequence__isnull=True).count()
    # The other apps' records, against the events this walk found intact (through the last one before a break).
    started = time.perf_counter()
    floor = result.archive_floor.sequence if result.archive_floor is not None else 0
    checks = verification.verifiers_run(
        scope=verification.Scope(after_sequence=floor, through_sequence=result.last_sequence)
    )
    checks_seconds = time.perf_counter() - started
    if not read_only:
        audit_verification_record(result=result, checks=checks, actor=actor)
    return AuditVerification(
        result=result, seconds=seconds, unsealed=unsealed, checks=tuple(checks), checks_seconds=checks_seconds
    )


def audit_chain_verify_now(*, actor) -> AuditVerification:
    """The audit log's "verify the chain now" (a compliance officer or an administrator; the view checks): what
    the nightly audit.tasks.audit_verify_task runs, in one stream, recorded as verified by `actor`, and at a break
    or a mismatch the same alert to every compliance officer and administrator (R-SEC-INTEGRITY)."""
    verification = audit_chain_verify(workers=1, actor=actor)
    if not verification.ok:
        audit_chain_break_alert(result=verification.result, checks=verification.checks)
    return verification


# --- Telling people about a break -------------------------------------------------------------------------

BREAK_ALERTED_ACTION = actions.AUDIT_BREAK_ALERTED


def audit_alert_recipient_list() -> list[str]:
    """The addresses of everyone who reads the audit trail (audit.permissions: the compliance officer and
    administrator groups, and superusers), active accounts only, each address once."""
    users = (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(groups__name__in=permissions.AUDIT_READERS) | Q(is_superuser=True))
        .exclude(email="")
        .order_by("email")
        .values_list("email", flat=True)
        .distinct()
    )
    seen: dict[str, str] = {}
    for address in users:
        seen.setdefault(address.strip().lower(), address.strip())
    return list(seen.values())


# How many named mismatches an alert lists (each check keeps its own capped list in the audit.verified event).
ALERT_MISMATCH_LINES = 20


def audit_chain_break_alert(*, result: chain.WalkResult, checks: Iterable[verification.CheckResult] = ()) -> int:
    """A verify found a break, or a check found records that differ from their sealed events: log an ERROR and
    email each compliance officer and administrator, one message each (so no recipient sees the others). Says
    where and why the chain broke, as a sequence number and a reason code, and which records differ, by id and
    code, and where to look (/audit/): no PHI, nothing from the broken event itself. Returns how many messages
    the mail server took; the alert is itself recorded (audit.break_alerted). R-SEC-AUDIT, R-SEC-INTEGRITY."""
    first_break = result.first_break
    failed = [check for check in checks if not check.ok]
    if first_break is None and not failed:
        return 0
    if first_break is not None:
        logger.error("audit: chain broken at sequence %d (%s)", first_break.sequence, first_break.reason)
    for check in failed:
        logger.error("audit: %s", check.summary())
    context = {
        "sequence": first_break.sequence if first_break else None,
        "reason": first_break.reason if first_break else "",
        "meaning": sentences.break_meaning(first_break.reason) if first_break else "",
        "checks": [
            {"summary": check.summary(), "lines": check.lines()[:ALERT_MISMATCH_LINES]} for check in failed
        ],
        "mismatches": sum(check.mismatches for check in failed),
        "site_url": settings.SITE_URL.rstrip("/"),
    }
    # One message for every recipient, so in the site's language, not that of whoever pressed "verify now"
    # (a recipient's own language is not known here yet).
    with translation.override(settings.LANGUAGE_CODE):
        subject = " ".join(render_to_string("audit/email/chain_break.subject.txt", context).split())
        body = render_to_string("audit/email/chain_break.txt", context)
        html = render_to_string("audit/email/chain_break.html", context)
    sent = 0
    recipients = audit_alert_recipient_list()
    for address in recipients:
        sent += staff_mail_send(address=address, subject=subject, text=body, html=html, what="audit: a chain-break alert")
    if not recipients:
        logger.error("audit: no active compliance officer or administrator to alert about the chain break")
    details = {
        "break_sequence": first_break.sequence if first_break else None,
        "break_reason": first_break.reason if first_break else None,
        "recipients": len(recipients),
        "delivered": sent,
    }
    if failed:
        details["mismatches"] = {check.name: check.mismatches for check in failed}
    audit_record(actor=None, actor_role=actions.SYSTEM, action=BREAK_ALERTED_ACTION, details=details)
    return sent
