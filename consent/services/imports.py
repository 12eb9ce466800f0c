"""Patient import from a CSV export of an EHR or CRM: validate everything first, then write the whole file or
nothing.

Decision (a compliance officer's): **a file with any error is refused whole.** The officer sees every problem
(row, column, what is wrong — never the value found there) and uploads a corrected export; there is no "import
the valid rows and skip the rest". Skipping rows would leave the system of record and hipaamail silently
disagreeing about who is a patient here, and "nothing half imported" is a promise about the file, not about a
batch. Rows that already exist (same email or same external id) count as errors for the same reason: the export
should be filtered at the source, so that what was imported is exactly the file that was approved.

How it runs:

1. Upload (`patient_import_upload`): the text is parsed and validated with the rules of `patient_create`
   (an email Django's validator accepts, stored lower-cased and trimmed; the model's choices and lengths) plus the
   import's own (strict YYYY-MM-DD dates, not in the future; US ZIP and state codes; ICD-10-shaped condition
   codes), and duplicates are found within the file and against existing patients by keyed digest
   (consent.crypto.lookup_digest). Errors are stored as {"row", "column", "code"}: row numbers as a spreadsheet
   shows them (the header is row 1). `PatientImport.error_count` counts the rows with at least one error, so the
   valid rows are `total_rows - error_count`; the stored list keeps the first MAX_STORED_ERRORS problems. A file
   without errors is kept encrypted (consent.crypto) until it is imported; a refused one is not kept at all, so
   plaintext PHI never rests on disk.
2. Start (`patient_import_start`): refused unless the preview had no error; enqueues the Celery task after
   commit.
3. Run (`patient_import_run`, the task's body, idempotent): validates again (patients may have been created
   since the preview), then writes in one durable transaction: Patient rows with bulk_create in batches of
   BATCH_SIZE (each encrypted field is encrypted by EncryptedTextField.get_prep_value, digests computed here),
   their PatientCondition rows the same way, then the import's status and one audit event. `full_clean` is not
   called per row, because its uniqueness check is one query per row; the same field rules are checked by the
   parser, uniqueness by one digest query per DIGEST_QUERY_CHUNK rows, and the database's unique constraints
   back both (a race loses with an IntegrityError and the whole transaction rolls back). Progress
   (`processed_rows`) is written on a second database connection in autocommit, so that the page polling it sees
   it while the import's own transaction is still open; on SQLite (the demo) the bar moves only at the end.
   One run at a time per import (an advisory lock on PostgreSQL); a task that was lost is run again by the
   reconciler (`patient_import_rewake`, every five minutes from Celery beat), so a started import is never left
   "importing" for good.

Update mode (issue 13: the EHR's nightly export must be re-importable). An import is uploaded in one of two modes
(`PatientImport.mode`): *create* refuses a patient already here, as above; *update* requires external_id on every
row, updates the patient whose record number it is (the file's columns are set, identifiers re-encrypted, digests
recomputed, condition and program codes replaced by the file's) and creates the others; an email that belongs to
another patient is an error (`email_in_use`). The same whole-file-or-nothing rule, transaction and progress. The
preview stores the counts it found in `created_count` and `updated_count` ("N new, M updated"); the run writes
the counts it wrote there.

The management command `import_patients` (`--update` for update mode) uses `patient_csv_validate` and `patient_csv_import` with the same rules.
Audit: one event per step (previewed, started, finished or failed) holding counts and error codes, never a value.
"""
from __future__ import annotations

from django.core.files.base import ContentFile
from django.db import transaction
from django.utils.translation import gettext

from audit import actions
from audit.services import audit_record
from consent import crypto
from consent.models import PatientImport
from consent.patient_import.validate import (
    MAX_STORED_ERRORS,
    ImportRefused,
    Mode,
    Validation,
    patient_csv_read,
    patient_csv_validate,
    validation_details,
)
from consent.tasks import patient_import_run_enqueue


def _rows_with_errors(validation: Validation) -> int:
    # A file-level problem (unreadable, a required column missing) makes every row unusable.
    if any(error["row"] == 1 for error in validation.errors):
        return max(validation.total_rows, 1)
    return validation.rows_with_errors


def patient_import_upload(*, actor, content: bytes, mode: str = Mode.CREATE) -> PatientImport:
    """Validate an uploaded file in `mode` ("create" or "update") and store its preview. A file without errors
    is kept, encrypted, for the import; a file with errors is refused and not kept."""
    if mode not in Mode.ALL:
        raise ImportRefused(gettext("Choose whether the file adds new patients only or also updates patients."))
    text, unreadable = patient_csv_read(content=content)
    validation = unreadable or patient_csv_validate(text=text, mode=mode)
    if unreadable:
        validation.mode = mode
    clean = not validation.errors
    patient_import = PatientImport(
        uploaded_by=actor,
        mode=mode,
        status=PatientImport.Status.PREVIEWED,
        # What the import would do, for the preview; the run overwrites them with what it wrote.
        created_count=validation.create_rows if clean else 0,
        updated_count=validation.update_rows if clean else 0,
        total_rows=validation.total_rows,
        error_count=_rows_with_errors(validation),
        errors=validation.errors[:MAX_STORED_ERRORS],
    )
    patient_import.full_clean(exclude=["file", "uploaded_by"])
    with transaction.atomic(durable=True):
        if not validation.errors and validation.total_rows:
            # Encrypted at rest like the identifiers it holds; the name says nothing about its content.
            patient_import.file.save("import.csv.enc", ContentFile(crypto.encrypt(text).encode()), save=False)
        patient_import.save(force_insert=True)
        audit_record(
            actor=actor,
            action=actions.PATIENT_IMPORT_PREVIEWED,
            object_type="patient_import",
            object_id=patient_import.pk,
            details=validation_details(validation),
        )
    return patient_import


def patient_import_start(*, actor, patient_import_id: int) -> PatientImport:
    """Start a previewed import without errors; the work runs in a Celery task enqueued after commit."""
    with transaction.atomic(durable=True):
        patient_import = PatientImport.objects.select_for_update().get(pk=patient_import_id)
        if patient_import.status != PatientImport.Status.PREVIEWED:
            raise ImportRefused(gettext("This import has already been started."))
        if patient_import.error_count or not patient_import.file or not patient_import.total_rows:
            raise ImportRefused(
                gettext("A file with errors, or with no rows, cannot be imported. Upload a corrected file.")
            )
        patient_import.status = PatientImport.Status.IMPORTING
        patient_import.processed_rows = 0
        patient_import.save(update_fields=["status", "processed_rows"])
        audit_record(
            actor=actor,
            action=actions.PATIENT_IMPORT_STARTED,
            object_type="patient_import",
            object_id=patient_import.pk,
            details={"total_rows": patient_import.total_rows, "mode": patient_import.mode},
        )
        transaction.on_commit(lambda: patient_import_run_enqueue(patient_import.pk))
    return patient_import
