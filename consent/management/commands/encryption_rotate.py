"""python manage.py encryption_rotate: re-encrypt patients' identifiers under the current key.

The consent_authorization table is append-only (a trigger refuses UPDATE), so the identifiers an
authorization holds (signature name, representative's authority, signing IP) stay under the key they were
written with: they are evidence and are never rewritten. This command counts them per key so that an old key
is retired only when nothing uses it any more.
"""
from collections import Counter

from django.core.management.base import BaseCommand
from django.db import connection, transaction

from audit import actions
from audit.services import audit_record
from consent import crypto
from consent.fields import EncryptedTextField
from consent.models import Authorization, Patient

BATCH_SIZE = 1_000


def encrypted_columns(model) -> list[str]:
    return [field.column for field in model._meta.concrete_fields if isinstance(field, EncryptedTextField)]


def _batches(model, columns: list[str], batch_size: int):
    """Raw (still encrypted) values in primary-key order, a batch at a time."""
    table = connection.ops.quote_name(model._meta.db_table)
    selected = ", ".join(connection.ops.quote_name(column) for column in columns)
    last_id = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, {selected} FROM {table} WHERE id > %s ORDER BY id LIMIT %s", [last_id, batch_size]
            )
            rows = cursor.fetchall()
        if not rows:
            return
        yield rows
        last_id = rows[-1][0]


def key_counts(model, batch_size: int = BATCH_SIZE) -> Counter:
    """How many stored values of the model's encrypted columns each key id encrypted."""
    counts: Counter = Counter()
    for rows in _batches(model, encrypted_columns(model), batch_size):
        for row in rows:
            counts.update(crypto.key_id_of(value) for value in row[1:] if value)
    return counts


def _reencrypt(value: str | None, current: str) -> str | None:
    if not value or crypto.key_id_of(value) == current:
        return value
    return crypto.encrypt(crypto.decrypt(value))


def patients_rotate(*, current: str, batch_size: int = BATCH_SIZE) -> int:
    """Re-encrypt under the current key every patient with a value under another key; one transaction per
    batch, the rows locked and read again before they are rewritten, so a concurrent change is not lost.
    Running it again finds nothing to do."""
    columns = encrypted_columns(Patient)
    quote = connection.ops.quote_name
    table = quote(Patient._meta.db_table)
    selected = ", ".join(quote(column) for column in columns)
    assignments = ", ".join(f"{quote(column)} = %s" for column in columns)
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    rotated = 0
    for rows in _batches(Patient, columns, batch_size):
        stale = [row[0] for row in rows if any(value and crypto.key_id_of(value) != current for value in row[1:])]
        if not stale:
            continue
        with transaction.atomic(), connection.cursor() as cursor:
            placeholders = ", ".join(["%s"] * len(stale))
            cursor.execute(f"SELECT id, {selected} FROM {table} WHERE id IN ({placeholders}) ORDER BY id{lock}", stale)
            updates = [[_reencrypt(value, current) for value in row[1:]] + [row[0]] for row in cursor.fetchall()]
            cursor.executemany(f"UPDATE {table} SET {assignments} WHERE id = %s", updates)
        rotated += len(updates)
    return rotated


class Command(BaseCommand):
    help = (
        "Re-encrypt every patient's encrypted identifiers under the current key (the first entry of "
        "FIELD_ENCRYPTION_KEYS), in batches; safe to run again. Authorizations are append-only evidence and are "
        "not rewritten: their signature name, representative's authority and signing IP stay under the key they "
        "were signed with, so an old key must stay in FIELD_ENCRYPTION_KEYS as long as any authorization uses "
        "it. The counts per key id printed before and after tell when a key can be retired."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="print the counts per key id; change nothing")
        parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)

    def _report(self, when: str, current: str) -> tuple[Counter, Counter]:
        patients, authorizations = key_counts(Patient), key_counts(Authorization)
        self.stdout.write(f"{when} (current key: {current})")
        for label, counts in (("patient values", patients), ("authorization values", authorizations)):
            listed = ", ".join(f"{key_id}: {n}" for key_id, n in sorted(counts.items())) or "none"
            self.stdout.write(f"  {label} by key id: {listed}")
        return patients, authorizations

    def handle(self, *args, dry_run: bool, batch_size: int, **options):
        current = crypto.current_key_id()
        self._report("Before", current)
        if dry_run:
            return
        rotated = patients_rotate(current=current, batch_size=batch_size)
        patients, authorizations = self._report("After", current)
        old_patient_values = sum(n for key_id, n in patients.items() if key_id != current)
        old_authorization_values = sum(n for key_id, n in authorizations.items() if key_id != current)
        with transaction.atomic(durable=True):
            audit_record(
                actor=None,
                actor_role=actions.SYSTEM,
                action=actions.ENCRYPTION_ROTATED,
                details={
                    "key_id": current,
                    "patients_rotated": rotated,
                    "patient_values_old_key": old_patient_values,
                    "authorization_values_old_key": old_authorization_values,
                },
            )
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {rotated} patient(s) under {current}."))
        if old_authorization_values:
            old_keys = sorted(key_id for key_id in authorizations if key_id != current)
            self.stdout.write(
                self.style.WARNING(
                    f"{old_authorization_values} authorization value(s) still use key(s) {', '.join(old_keys)}: "
                    "authorizations are append-only evidence and are not rewritten. Keep those keys in "
                    "FIELD_ENCRYPTION_KEYS."
                )
            )
