"""An authorization as an HL7 FHIR Consent, in R4 form (fhir.resources' R4B models: Consent is the same in R4
and R4B) and in R5 form, and back (issue 4 item 8).

Every resource is built as a plain dict and validated by constructing the fhir.resources model before it
leaves this module. fhir.resources checks structure, not code lists, so `consent_read` checks the codes we
rely on ourselves and answers a short reason code when one is wrong (never a value read from the file:
R-NO-PHI-LEAK).

Choices, written down because others will wonder:
- purpose of use (Consent.provision.purpose, bound to v3 PurposeOfUse, http://hl7.org/fhir/R5/consent-definitions.html):
  `HMARKT` ("marketing") for a marketing-kind purpose, `TREAT` ("treatment") for a treatment-kind one (refill and
  appointment reminders: 164.501 excludes them from "marketing"), both of
  http://terminology.hl7.org/CodeSystem/v3-ActReason, plus our own purpose code (PURPOSE_SYSTEM). Import requires
  our code and the purpose of use of that purpose's kind, so that a consent for some other marketing never covers
  one of our purposes and a treatment consent never becomes a marketing authorization (R-PURPOSE-KIND).
- policy: a marketing authorization is a HIPAA authorization under 45 CFR 164.508: the Consent PolicyRule code
  `hipaa-auth` of http://terminology.hl7.org/CodeSystem/consentpolicycodes ("HIPAA Authorization"; hl7.org/fhir/R4/
  codesystem-consent-policy.html), as R4's `policyRule` and R5's `regulatoryBasis`, and 164.508 as the policy URL.
  A treatment-kind consent is no 164.508 authorization: the Privacy Rule lets a covered entity use PHI for
  treatment without one and ask for a consent if it wishes (164.506(b)); we ask for one (policy, RULES.md
  R-PURPOSE-KIND). Its rule is v3 ActCode `HIPAAConsent` ("HIPAA consent", the _ActPrivacyLaw code for a
  consent to uses for treatment, payment and operations; terminology.hl7.org ValueSet-v3-ActPrivacyLaw), since
  the consent-policy code system has no code for it (R4's binding is extensible), and 164.506 as the policy URL.
- status: R4 active / inactive (revoked, expired, or ended by its expiry event) / rejected (a recorded defect,
  164.508(b)(2)); R5 has no "rejected", so a defective authorization is "inactive" there.
- the signed PDF is the sourceAttachment. FHIR's Attachment.hash is the base64 SHA-1 of `data`, and we fill it
  that way; Attachment.size is an unsignedInt (a JSON number) in R4 but an integer64 in R5, which R5's JSON
  represents as a string (hl7.org/fhir/R5/json.html#primitive, datatypes.html#integer64), so the R5 form writes
  it as one (fhir.resources would dump it as a number); the SHA-256 of the signed text (R-AUTH-ESIGN) rides in an extension (TEXT_HASH_EXTENSION) rather
  than in `title`, so that `title` stays a human label and the hash stays machine-readable.
- the patient: by identifier (our record-number system) when the patient has an external id, else an opaque
  `Patient/<id>` reference. Import accepts only the identifier: a reference means something only on the
  server that wrote it.
- an expiry event (R-AUTH-CORE-5) has no FHIR element; it rides in EXPIRY_EVENT_EXTENSION.
"""
import base64
import hashlib
from dataclasses import dataclass
from datetime import date, datetime, time

from django.utils import timezone
from fhir.resources.consent import Consent as ConsentR5
from fhir.resources.R4B.consent import Consent as ConsentR4
from pydantic import ValidationError as PydanticValidationError

from consent.models import Authorization, Purpose
from consent.selectors.patients import AuthorizationState, authorization_state

BASE = "https://hipaamail.example"
PURPOSE_SYSTEM = f"{BASE}/purpose"
AUTHORIZATION_SYSTEM = f"{BASE}/authorization"
PATIENT_SYSTEM = f"{BASE}/patient-record-number"
TEXT_HASH_EXTENSION = f"{BASE}/fhir/StructureDefinition/signed-text-sha256"
EXPIRY_EVENT_EXTENSION = f"{BASE}/fhir/StructureDefinition/expiry-event"
ACT_REASON_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONSENT_POLICY_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentpolicycodes"
MARKETING = "HMARKT"
TREATMENT = "TREAT"
LOINC = "http://loinc.org"
CONSENT_CATEGORY = "59284-0"  # LOINC "Patient Consent"
HIPAA_164_508 = "https://www.ecfr.gov/current/title-45/subtitle-A/subchapter-C/part-164/subpart-E/section-164.508"
HIPAA_164_506 = "https://www.ecfr.gov/current/title-45/subtitle-A/subchapter-C/part-164/subpart-E/section-164.506"


@dataclass(frozen=True)
class KindCodes:
    """What a purpose's kind is in FHIR: its purpose of use, the rule it is given under, the regulation."""

    purpose_of_use: dict
    policy_rule: dict
    policy_url: str


KIND_CODES = {
    Purpose.Kind.MARKETING: KindCodes(
        purpose_of_use={"system": ACT_REASON_SYSTEM, "code": MARKETING, "display": "marketing"},
        policy_rule={"system": CONSENT_POLICY_SYSTEM, "code": "hipaa-auth", "display": "HIPAA Authorization"},
        policy_url=HIPAA_164_508,
    ),
    Purpose.Kind.TREATMENT: KindCodes(
        purpose_of_use={"system": ACT_REASON_SYSTEM, "code": TREATMENT, "display": "treatment"},
        policy_rule={"system": ACT_CODE_SYSTEM, "code": "HIPAAConsent", "display": "HIPAA consent"},
        policy_url=HIPAA_164_506,
    ),
}
PURPOSES_OF_USE = {codes.purpose_of_use["code"]: kind for kind, codes in KIND_CODES.items()}

R4 = "r4"
R5 = "r5"
VERSIONS = (R4, R5)

KNOWN_STATUSES = {"active", "inactive", "rejected", "draft", "proposed", "entered-in-error"}


class FhirRejected(Exception):
    """An entry we do not import; `code` says why, in a word that names no value from the file."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


# --- export -----------------------------------------------------------------------------------------------


def _status(authorization: Authorization, version: str) -> str:
    state = authorization_state(authorization)
    if state in (AuthorizationState.ACTIVE, AuthorizationState.NOT_YET_SIGNED):
        return "active"
    if state == AuthorizationState.DEFECTIVE and version == R4:
        return "rejected"
    return "inactive"


def _attachment(authorization: Authorization) -> dict | None:
    attachment: dict = {}
    if authorization.pdf:
        with authorization.pdf.open("rb") as handle:
            data = handle.read()
        attachment |= {
            "contentType": "application/pdf",
            "data": base64.b64encode(data).decode(),
            "size": len(data),
            "hash": base64.b64encode(hashlib.sha1(data).digest()).decode(),
        }
    if authorization.text_hash:
        attachment["extension"] = [{"url": TEXT_HASH_EXTENSION, "valueString": authorization.text_hash}]
    if not attachment:
        return None
    attachment.setdefault("contentType", "application/pdf")
    attachment["title"] = f"Signed authorization {authorization.pk}"
    attachment["creation"] = authorization.signed_at.isoformat()
    return attachment


def _common(authorization: Authorization) -> tuple[dict, dict, dict, list]:
    patient = authorization.patient
    if patient.external_id:
        reference = {"identifier": {"system": PATIENT_SYSTEM, "value": patient.external_id}}
    else:
        reference = {"reference": f"Patient/{patient.pk}"}
    period = {"start": authorization.signed_at.isoformat()}
    if authorization.expires_at:
        period["end"] = authorization.expires_at.isoformat()
    purposes = [
        KIND_CODES[authorization.purpose.kind].purpose_of_use,
        {"system": PURPOSE_SYSTEM, "code": authorization.purpose.code, "display": authorization.purpose.name},
    ]
    extension = []
    if authorization.expiry_event:
        extension.append({"url": EXPIRY_EVENT_EXTENSION, "valueString": authorization.expiry_event})
    return reference, period, {"coding": purposes}, extension


def _category() -> list[dict]:
    return [{"coding": [{"system": LOINC, "code": CONSENT_CATEGORY, "display": "Patient Consent"}]}]


def authorization_to_fhir(authorization: Authorization, *, version: str) -> dict:
    """The authorization as a FHIR Consent (a JSON-ready dict), validated by fhir.resources."""
    reference, period, purposes, extension = _common(authorization)
    resource: dict = {
        "resourceType": "Consent",
        "id": f"authorization-{authorization.pk}",
        "identifier": [{"system": AUTHORIZATION_SYSTEM, "value": str(authorization.pk)}],
        "status": _status(authorization, version),
        "category": _category(),
    }
    if extension:
        resource["extension"] = extension
    attachment = _attachment(authorization)
    kind = KIND_CODES[authorization.purpose.kind]
    if version == R4:
        resource |= {
            "scope": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
            },
            "patient": reference,
            "dateTime": authorization.signed_at.isoformat(),
            "policy": [{"uri": kind.policy_url}],
            "policyRule": {"coding": [kind.policy_rule]},
            "provision": {"type": "permit", "period": period, "purpose": purposes["coding"]},
        }
        if attachment:
            resource["sourceAttachment"] = attachment
        model = ConsentR4.model_validate(resource)
    elif version == R5:
        resource |= {
            "subject": reference,
            "date": timezone.localtime(authorization.signed_at).date().isoformat(),
            "decision": "permit",
            "period": period,
            "regulatoryBasis": [{"coding": [kind.policy_rule]}],
            "policyBasis": {"url": kind.policy_url},
            "provision": [{"period": period, "purpose": purposes["coding"]}],
        }
        if attachment:
            resource["sourceAttachment"] = [attachment]
        model = ConsentR5.model_validate(resource)
    else:
        raise ValueError(f"unknown FHIR version {version!r}")
    exported = model.model_dump(mode="json", exclude_none=True)
    if version == R5:
        for item in exported.get("sourceAttachment", []):
            if "size" in item:
                item["size"] = str(item["size"])  # integer64: a string in R5's JSON
    return exported


# --- import -----------------------------------------------------------------------------------------------


@dataclass
class ConsentRead:
    """What we take from one Consent: checked codes, typed values."""

    version: str
    status: str
    permit: bool
    purpose_code: str
    purposes_of_use: frozenset[str]  # our v3 ActReason codes in the provision (HMARKT, TREAT)
    patient_record_number: str
    signed_at: datetime
    expires_at: datetime | None
    expiry_event: str
    pdf: bytes | None


def detect_version(resource: dict) -> str:
    """R5 if it has any element only R5 has; R4 otherwise (R4's `patient`, `scope`, `dateTime` or a single
    `provision`)."""
    if any(key in resource for key in ("subject", "decision", "date", "grantor", "grantee", "controller")):
        return R5
    if isinstance(resource.get("provision"), list) or isinstance(resource.get("sourceAttachment"), list):
        return R5
    return R4


def _instant(value) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if timezone.is_aware(value) else timezone.make_aware(value)
    if isinstance(value, date):
        return timezone.make_aware(datetime.combine(value, time.min))
    raise FhirRejected("bad_period")


def _extension(extensions, url: str) -> str:
    for extension in extensions or []:
        if extension.url == url and extension.valueString:
            return extension.valueString
    return ""


def consent_read(resource) -> ConsentRead:
    """Validate one Consent with fhir.resources (the form detected by its fields), then check the codes we
    rely on. Raises FhirRejected with a reason code."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Consent":
        raise FhirRejected("not_a_consent")
    version = detect_version(resource)
    try:
        model = (ConsentR5 if version == R5 else ConsentR4).model_validate(resource)
    except (PydanticValidationError, ValueError, TypeError):
        raise FhirRejected(f"invalid_fhir_{version}") from None
    if model.status not in KNOWN_STATUSES:
        raise FhirRejected("bad_status")

    if version == R4:
        provision = model.provision
        if provision is None:
            raise FhirRejected("missing_provision")
        if provision.type not in ("permit", "deny"):
            raise FhirRejected("bad_provision_type")
        permit = provision.type == "permit"
        period = provision.period
        reference = model.patient
        attachments = [model.sourceAttachment] if model.sourceAttachment else []
    else:
        if not model.provision:
            raise FhirRejected("missing_provision")
        provision = model.provision[0]
        if model.decision not in ("permit", "deny"):
            raise FhirRejected("bad_provision_type")
        permit = model.decision == "permit"
        period = provision.period or model.period
        reference = model.subject
        attachments = model.sourceAttachment or []

    codings = list(provision.purpose or [])
    purposes_of_use = frozenset(c.code for c in codings if c.system == ACT_REASON_SYSTEM and c.code in PURPOSES_OF_USE)
    if not purposes_of_use:
        raise FhirRejected("missing_hmarkt")
    local = [c.code for c in codings if c.system == PURPOSE_SYSTEM and c.code]
    if len(local) != 1:
        raise FhirRejected("missing_purpose_code")
    if period is None or period.start is None:
        raise FhirRejected("missing_period_start")
    signed_at, expires_at = _instant(period.start), _instant(period.end)
    if expires_at is not None and expires_at <= signed_at:
        raise FhirRejected("bad_period")
    identifier = reference.identifier if reference is not None else None
    if identifier is None or identifier.system != PATIENT_SYSTEM or not identifier.value:
        raise FhirRejected("missing_patient_identifier")

    pdf = None
    for attachment in attachments:
        if attachment.data and attachment.contentType == "application/pdf":
            data = attachment.data if isinstance(attachment.data, bytes) else base64.b64decode(attachment.data)
            if not data.startswith(b"%PDF-"):
                raise FhirRejected("bad_attachment")
            pdf = data
            break
    return ConsentRead(
        version=version,
        status=model.status,
        permit=permit,
        purpose_code=local[0],
        purposes_of_use=purposes_of_use,
        patient_record_number=identifier.value,
        signed_at=signed_at,
        expires_at=expires_at,
        expiry_event=_extension(model.extension, EXPIRY_EVENT_EXTENSION),
        pdf=pdf,
    )


def purpose_of_use_check(read: ConsentRead, *, kind: str) -> None:
    """The consent's purpose of use must be exactly the one of our purpose's kind (R-PURPOSE-KIND): a treatment
    consent (TREAT) never becomes a marketing authorization, nor a marketing one (HMARKT) a treatment consent.
    Raises FhirRejected."""
    expected = KIND_CODES[kind].purpose_of_use["code"]
    if expected not in read.purposes_of_use:
        raise FhirRejected("missing_hmarkt" if expected == MARKETING else "missing_treat")
    if read.purposes_of_use != {expected}:
        raise FhirRejected("mixed_purpose_of_use")
