"""Import a FHIR Bundle of Consent resources (R4 or R5 form) as authorizations (issue 4 item 8).

The rule, kept simple on purpose:
- every entry is validated with fhir.resources and our own code checks (consent.fhir.consent_read); an entry
  that fails is rejected with a reason code and changes nothing;
- only `permit` consents in status `active` or `inactive` are acted on; `rejected`, `draft`, `proposed` and
  `entered-in-error` are valid FHIR but give us nothing to record (reason `status_not_imported`), and a `deny`
  is a refusal, which needs no record because no authorization means no message (reason `deny_not_imported`);
- the same authorization is the same patient, purpose and signing instant. An active consent we already
  hold is `already_recorded`; a new one becomes an authorization (channel "import");
- an inactive consent ends the matching authorization we hold with a revocation (channel "import"); one we
  do not hold is recorded as it was — an authorization whose period has ended is simply stored (it is
  expired), otherwise it is stored and revoked at once — so that our record shows the same history
  (R-RETAIN-6Y). A revocation made by import takes effect when the import commits, not at an earlier time;
- everything accepted is written in one durable transaction, with one `fhir.imported` audit event (counts
  and ids only) besides the events of each authorization and revocation.
"""
import json
import uuid
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from audit import actions
from audit.services import audit_record
from consent import crypto
from consent.fhir import FhirRejected, consent_read, detect_version, purpose_of_use_check
from consent.models import Authorization, Patient, Purpose, Revocation
from consent.selectors.coverage import authorization_covering_list
from consent.services.authorizations import authorization_grant, authorizations_revoke_locked

MAX_ENTRIES = 10_000
OUTCOME_LABELS = {
    "created": gettext_lazy("Created"),
    "revoked": gettext_lazy("Revoked"),
    "already_recorded": gettext_lazy("Already recorded"),
    "rejected": gettext_lazy("Rejected"),
}


@dataclass
class EntryOutcome:
    number: int  # 1-based position in the bundle; never an identifier from the file
    outcome: str  # created, revoked, already_recorded, rejected
    reason: str = ""
    authorization_id: int | None = None
    version: str = ""

    @property
    def outcome_label(self) -> str:
        return OUTCOME_LABELS[self.outcome]


@dataclass
class ImportReport:
    entries: list[EntryOutcome] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for entry in self.entries if entry.outcome == outcome)

    @property
    def accepted(self) -> int:
        return len(self.entries) - self.rejected

    @property
    def rejected(self) -> int:
        return self.count("rejected")

    @property
    def rejected_entries(self) -> list[EntryOutcome]:
        return [entry for entry in self.entries if entry.outcome == "rejected"]


# The deepest a Bundle of Consents needs is about a dozen levels (bundle, entry, resource, provision, purpose,
# coding, extension); a file nested deeper is not one.
MAX_DEPTH = 64


def _too_deep() -> str:
    return _("The file is nested more than %(depth)s levels deep; it is not a FHIR Bundle of Consents.") % {
        "depth": MAX_DEPTH
    }


def _depth(value) -> int:
    """How deeply lists and objects nest in a parsed JSON value (without recursion: any depth is measured)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                break
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def bundle_parse(raw: bytes) -> list:
    """The Consent entries of a Bundle, or a ValidationError that names the problem (not the content)."""
    try:
        bundle = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        # ValueError: what JSONDecodeError is, and a number too long for Python to read (over 4,300 digits).
        raise ValidationError(_("The file is not JSON."), code="not_json") from None
    except RecursionError:
        raise ValidationError(_too_deep(), code="too_deep") from None
    if _depth(bundle) > MAX_DEPTH:
        # Refused before fhir.resources validates it: its models recurse once per level (a RecursionError).
        raise ValidationError(_too_deep(), code="too_deep")
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise ValidationError(_("The file is not a FHIR Bundle."), code="not_a_bundle")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise ValidationError(_("The Bundle's entries are not a list."), code="not_a_bundle")
    if not entries:
        raise ValidationError(_("The Bundle has no entries."), code="empty_bundle")
    if len(entries) > MAX_ENTRIES:
        raise ValidationError(
            _("The Bundle has more than %(count)s entries; split it.") % {"count": f"{MAX_ENTRIES:,}"}, code="too_many"
        )
    return [entry.get("resource") if isinstance(entry, dict) else None for entry in entries]


def _import_one(*, actor, resource, purposes: dict[str, Purpose]) -> EntryOutcome:
    read = consent_read(resource)
    if read.status not in ("active", "inactive"):
        raise FhirRejected("status_not_imported")
    if not read.permit:
        raise FhirRejected("deny_not_imported")
    purpose = purposes.get(read.purpose_code)
    if purpose is None:
        raise FhirRejected("unknown_purpose")
    purpose_of_use_check(read, kind=purpose.kind)
    patient = Patient.objects.filter(external_id_digest=crypto.lookup_digest(read.patient_record_number)).first()
    if patient is None:
        raise FhirRejected("unknown_patient")
    if read.expires_at is None and not read.expiry_event:
        raise FhirRejected("no_expiry")  # R-AUTH-CORE-5
    if read.signed_at > timezone.now():
        raise FhirRejected("signed_in_future")

    existing = (
        Authorization.objects.filter(patient=patient, purpose=purpose, signed_at=read.signed_at).order_by("id").first()
    )
    if existing is not None:
        if read.status == "active":
            return EntryOutcome(0, "already_recorded", authorization_id=existing.pk, version=read.version)
        covered = authorization_covering_list(purpose_id=purpose.pk, patient_ids=[patient.pk]).filter(id=existing.pk)
        if not covered.exists():
            return EntryOutcome(0, "already_recorded", authorization_id=existing.pk, version=read.version)
        authorizations_revoke_locked(actor=actor, authorization_ids=[existing.pk], channel=Revocation.Channel.IMPORT)
        return EntryOutcome(0, "revoked", authorization_id=existing.pk, version=read.version)

    pdf_name = ""
    if read.pdf:
        pdf_name = default_storage.save(f"authorizations/{uuid.uuid4().hex}.pdf", ContentFile(read.pdf))
    try:
        authorization = authorization_grant(
            actor=actor,
            patient=patient,
            purpose=purpose,
            signed_at=read.signed_at,
            expires_at=read.expires_at,
            expiry_event=read.expiry_event if read.expires_at is None else "",
            channel=Authorization.Channel.IMPORT,
            pdf_name=pdf_name,
        )
    except ValidationError:
        raise FhirRejected("invalid_authorization") from None
    if read.status == "inactive":
        ended = Authorization.objects.filter(pk=authorization.pk, expires_at__lte=Now()).exists()
        if not ended:
            authorizations_revoke_locked(
                actor=actor, authorization_ids=[authorization.pk], channel=Revocation.Channel.IMPORT
            )
    return EntryOutcome(0, "created", authorization_id=authorization.pk, version=read.version)


def fhir_bundle_import(*, actor, raw: bytes) -> ImportReport:
    """Import a Bundle of Consents; see the module's docstring for the rule. Raises ValidationError for a
    file that is not a Bundle at all; otherwise returns the report, entry by entry."""
    resources = bundle_parse(raw)
    purposes = {purpose.code: purpose for purpose in Purpose.objects.all()}
    report = ImportReport()
    with transaction.atomic(durable=True):
        for number, resource in enumerate(resources, start=1):
            try:
                # A savepoint per entry: a rejected entry leaves nothing behind, the others stand.
                with transaction.atomic():
                    outcome = _import_one(actor=actor, resource=resource, purposes=purposes)
            except FhirRejected as rejected:
                version = detect_version(resource) if isinstance(resource, dict) else ""
                outcome = EntryOutcome(0, "rejected", reason=rejected.code, version=version)
            outcome.number = number
            report.entries.append(outcome)
        audit_record(
            actor=actor,
            action=actions.FHIR_IMPORTED,
            object_type="fhir_bundle",
            details={
                "entries": len(report.entries),
                "created": report.count("created"),
                "revoked": report.count("revoked"),
                "already_recorded": report.count("already_recorded"),
                "rejected": report.rejected,
                "authorization_ids": [e.authorization_id for e in report.entries if e.authorization_id][:500],
                "reasons": sorted({e.reason for e in report.rejected_entries}),
            },
        )
    return report
