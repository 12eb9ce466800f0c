"""Purposes edited, and authorization form versions drafted, edited and published (issue 4, items 1 and 2).

A form version carries every element and statement 45 CFR 164.508(c) requires as a field of its own; publishing
names each one that is missing in plain words, with its rule id as the error's code (RULE_CITATIONS gives the
paragraph a person reads). One purpose per form (R-AUTH-NO-COMPOUND): a version is
created for a purpose and nothing here can change or add one. Published versions never change
(R-AUTH-IMMUTABLE: refused here, and by a database trigger beneath); a change is a new version.
Every write audits in the same transaction, with ids and codes only.
"""
from dataclasses import dataclass
from datetime import date

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import actions
from audit.services import audit_record
from consent.documents import PATIENT_FIELDS, form_sections, form_text, text_hash
from consent.models import AuthorizationForm, Language, Purpose
from consent.readability import Readability, readability_of

# The fields an author writes; everything else (purpose, version, status, who and when) the services set.
AUTHORED_FIELDS = (
    "title",
    "information_description",
    "merge_fields",
    "authorized_party",
    "recipients_description",
    "purpose_description",
    "expiry_kind",
    "expiry_months",
    "expiry_date",
    "expiry_event",
    "signature_statement",
    "revocation_statement",
    "revocation_address",
    "conditioning_statement",
    "redisclosure_statement",
    "remuneration_statement",
)

# A signature statement must say that a personal representative describes their authority (R-AUTH-CORE-6): the words
# that show it, in the form's language.
_REPRESENTATIVE_WORDS = {"en": ("representative", "authority"), "es": ("representante", "autoridad")}

# Words that say "no expiry" (R-AUTH-CORE-5: never "none"). Compared with the whole event text, lowercased.
_NO_EXPIRY_WORDS = {"none", "never", "no", "n/a", "na", "no expiration", "no expiry", "does not expire", "-"}


# The paragraph of the regulation each publish check enforces, as a person reads it (RULES.md section 2). The
# rule id stays the error's code, for code and tests; the text a person reads cites the regulation instead.
RULE_CITATIONS = {
    "R-AUTH-CORE-1": "HIPAA, 45 CFR 164.508(c)(1)(i)",
    "R-AUTH-CORE-2": "HIPAA, 45 CFR 164.508(c)(1)(ii)",
    "R-AUTH-CORE-3": "HIPAA, 45 CFR 164.508(c)(1)(iii)",
    "R-AUTH-CORE-4": "HIPAA, 45 CFR 164.508(c)(1)(iv)",
    "R-AUTH-CORE-5": "HIPAA, 45 CFR 164.508(c)(1)(v)",
    "R-AUTH-CORE-6": "HIPAA, 45 CFR 164.508(c)(1)(vi)",
    "R-AUTH-STMT-REVOKE": "HIPAA, 45 CFR 164.508(c)(2)(i)",
    "R-AUTH-STMT-CONDITION": "HIPAA, 45 CFR 164.508(c)(2)(ii)",
    "R-AUTH-STMT-REDISCLOSURE": "HIPAA, 45 CFR 164.508(c)(2)(iii)",
    "R-AUTH-STMT-REMUNERATION": "HIPAA, 45 CFR 164.508(a)(3)(ii)",
}


def rule_citation(rule: str) -> str:
    """The regulation a rule id stands for, in the words a person reads ("" for a rule of our own policy)."""
    return RULE_CITATIONS.get(rule, "")


@dataclass(frozen=True)
class MissingElement:
    """One element a form version lacks: the rule it breaks (its code) and what the author must write."""

    rule: str
    field: str
    message: str

    @property
    def citation(self) -> str:
        return rule_citation(self.rule)

    def __str__(self) -> str:
        # What a person reads: the message, never the rule id (the ValidationError's code carries that).
        return self.message


# ---------------------------------------------------------------------------------------------------------
# Purposes


def purpose_update(
    *,
    actor,
    purpose_id: int,
    code: str,
    name: str,
    description: str,
    kind: str,
    third_party_paid: bool,
    name_es: str = "",
    description_es: str = "",
) -> Purpose:
    """Edit a purpose. A treatment-kind purpose that a third party pays for is refused by the model's
    constraint, whose message full_clean raises (R-PURPOSE-REMUNERATION)."""
    with transaction.atomic():
        purpose = Purpose.objects.select_for_update().get(pk=purpose_id)
        before = {"code": purpose.code, "kind": purpose.kind, "third_party_paid": purpose.third_party_paid}
        purpose.code, purpose.name, purpose.description = code, name, description
        purpose.kind, purpose.third_party_paid = kind, third_party_paid
        purpose.name_es, purpose.description_es = name_es.strip(), description_es.strip()
        purpose.full_clean()
        purpose.save(
            update_fields=["code", "name", "description", "kind", "third_party_paid", "name_es", "description_es"]
        )
        audit_record(
            actor=actor,
            action=actions.PURPOSE_UPDATED,
            object_type="purpose",
            object_id=purpose.pk,
            details={
                "code": purpose.code,
                "kind": purpose.kind,
                "third_party_paid": purpose.third_party_paid,
                "before": before,
            },
        )
    return purpose


# ---------------------------------------------------------------------------------------------------------
# Form versions: reads


def form_version_readability(form: AuthorizationForm) -> Readability:
    """The readability of the whole text a patient reads (R-AUTH-PLAIN), in the formula of the form's language
    (Flesch-Kincaid for English, INFLESZ for Spanish): the title and every section of
    consent.documents.form_sections. The section headings are left out: they are short fixed phrases, not
    sentences, and counting each as one would pull the grade of any text down by a grade or two."""
    body = [form.title, *(text for _heading, text in form_sections(form))]
    return readability_of("\n\n".join(body), language=form.language or Language.ENGLISH)


def form_version_readability_grade(form: AuthorizationForm) -> float:
    """The Flesch-Kincaid grade of an English version (form_version_readability for any language)."""
    return form_version_readability(form).score


def form_version_missing_elements(form: AuthorizationForm, *, today: date | None = None) -> list[MissingElement]:
    """What this version lacks before it may be published, in the order a patient reads the form. Each
    entry names the element and its rule (164.508(c)); an empty list means it may be published."""
    today = today or timezone.localdate()
    purpose = form.purpose
    missing: list[MissingElement] = []

    def lacks(rule: str, field: str, message: str) -> None:
        missing.append(MissingElement(rule=rule, field=field, message=message))

    def blank(value: str) -> bool:
        return not (value or "").strip()

    if blank(form.information_description):
        lacks("R-AUTH-CORE-1", "information_description",
              _("Information to be used: describe, specifically, the information that will be used."))
    if not form.merge_fields:
        lacks("R-AUTH-CORE-1", "merge_fields",
              _("Information to be used: tick at least one patient field that messages may use."))
    if blank(form.authorized_party):
        lacks("R-AUTH-CORE-2", "authorized_party",
              _("Who is authorized to use it: name the organization that will use the information."))
    if blank(form.recipients_description):
        lacks("R-AUTH-CORE-3", "recipients_description",
              _("Who may receive it: name the persons, or the class of persons, who may receive the information."))
    if blank(form.purpose_description):
        lacks("R-AUTH-CORE-4", "purpose_description", _("Purpose: describe why the information will be used."))
    _check_expiry(form, purpose, today, lacks)
    if blank(form.signature_statement):
        lacks("R-AUTH-CORE-6", "signature_statement",
              _("Signature statement: say what signing means and that a personal representative must describe "
                "their authority to act for the patient."))
    elif not all(word in form.signature_statement.lower() for word in _REPRESENTATIVE_WORDS[form.language or "en"]):
        lacks("R-AUTH-CORE-6", "signature_statement",
              _("Signature statement: also say that a personal representative who signs must describe their "
                "authority to act for the patient."))
    if blank(form.revocation_statement):
        lacks("R-AUTH-STMT-REVOKE", "revocation_statement",
              _("Right to revoke: say that the patient may revoke in writing at any time, how, and that it does "
                "not undo what was already done in reliance on it."))
    if blank(form.revocation_address):
        lacks("R-AUTH-STMT-REVOKE", "revocation_address",
              _("Revocation address: give the address where a written revocation can be sent."))
    if blank(form.conditioning_statement):
        lacks("R-AUTH-STMT-CONDITION", "conditioning_statement",
              _("Conditioning statement: say that treatment, payment, enrollment and eligibility for benefits do "
                "not depend on signing."))
    if blank(form.redisclosure_statement):
        lacks("R-AUTH-STMT-REDISCLOSURE", "redisclosure_statement",
              _("Redisclosure statement: say that a recipient may disclose the information again and that it may "
                "then no longer be protected by federal privacy law."))
    if purpose.third_party_paid and blank(form.remuneration_statement):
        lacks("R-AUTH-STMT-REMUNERATION", "remuneration_statement",
              _("Remuneration statement: a third party pays for these communications, so the form must say so."))
    elif not purpose.third_party_paid and not blank(form.remuneration_statement):
        lacks("R-AUTH-STMT-REMUNERATION", "remuneration_statement",
              _("Remuneration statement: the purpose records no paying third party; remove the statement or "
                "correct the purpose (the form must not state something false)."))
    return missing


def _check_expiry(form: AuthorizationForm, purpose: Purpose, today: date, lacks) -> None:
    kind = form.expiry_kind
    if not kind:
        lacks("R-AUTH-CORE-5", "expiry_kind",
              _("Expiration: choose when the authorization ends (a number of months, a date or an event)."))
    elif kind == AuthorizationForm.ExpiryKind.MONTHS and not form.expiry_months:
        lacks("R-AUTH-CORE-5", "expiry_months", _("Expiration: give the number of months after signing."))
    elif kind == AuthorizationForm.ExpiryKind.DATE and not form.expiry_date:
        lacks("R-AUTH-CORE-5", "expiry_date", _("Expiration: give the date on which it ends."))
    elif kind == AuthorizationForm.ExpiryKind.DATE and form.expiry_date <= today:
        lacks("R-AUTH-CORE-5", "expiry_date", _("Expiration: the end date must be in the future."))
    elif kind == AuthorizationForm.ExpiryKind.EVENT and not (form.expiry_event or "").strip():
        lacks("R-AUTH-CORE-5", "expiry_event", _("Expiration: describe the event that ends it."))
    elif kind == AuthorizationForm.ExpiryKind.EVENT and _says_no_expiry(form.expiry_event):
        if purpose.kind == Purpose.Kind.MARKETING:
            message = _("Expiration: a marketing authorization must end; describe a real event, not “none”.")
        else:
            message = _("Expiration: an authorization must end; describe a real event, not “none”.")
        lacks("R-AUTH-CORE-5", "expiry_event", message)


def _says_no_expiry(text: str) -> bool:
    return text.strip().strip(".").lower() in _NO_EXPIRY_WORDS


# ---------------------------------------------------------------------------------------------------------
# Form versions: writes


def form_version_create(*, actor, purpose_id: int, copy_from_id: int | None = None) -> AuthorizationForm:
    """A new draft for this purpose, numbered one above its highest version. With `copy_from_id`, every
    authored field of that version of the same purpose is copied ("new version from this one")."""
    with transaction.atomic():
        # The purpose row is locked so that two authors cannot take the same number (the unique
        # constraint would refuse the second; the lock makes it wait and take the next).
        purpose = Purpose.objects.select_for_update().get(pk=purpose_id)
        version = (purpose.forms.aggregate(highest=Max("version"))["highest"] or 0) + 1
        form = AuthorizationForm(purpose=purpose, version=version, created_by=actor)
        if copy_from_id is not None:
            source = AuthorizationForm.objects.filter(pk=copy_from_id, purpose=purpose, language=Language.ENGLISH).first()
            if source is None:
                raise ValidationError(_("A new version can only be copied from a version of the same purpose."))
            for field in AUTHORED_FIELDS:
                value = getattr(source, field)
                setattr(form, field, list(value) if isinstance(value, list) else value)
        else:
            form.title = f"Authorization to use your information: {purpose.name}"
            form.purpose_description = purpose.description
        form.full_clean()
        form.save(force_insert=True)
        audit_record(
            actor=actor,
            action=actions.AUTHORIZATION_FORM_CREATED,
            object_type="authorization_form",
            object_id=form.pk,
            details={
                "purpose_id": purpose.pk,
                "purpose": purpose.code,
                "version": form.version,
                "copied_from_id": copy_from_id,
            },
        )
    return form


def form_version_update(
    *,
    actor,
    form_id: int,
    title: str,
    information_description: str = "",
    merge_fields: list[str] | tuple[str, ...] = (),
    authorized_party: str = "",
    recipients_description: str = "",
    purpose_description: str = "",
    expiry_kind: str = "",
    expiry_months: int | None = None,
    expiry_date: date | None = None,
    expiry_event: str = "",
    signature_statement: str = "",
    revocation_statement: str = "",
    revocation_address: str = "",
    conditioning_statement: str = "",
    redisclosure_statement: str = "",
    remuneration_statement: str = "",
) -> AuthorizationForm:
    """Save the authored fields of a draft. A draft may be incomplete; publishing checks completeness.

    Refused: a published version (R-AUTH-IMMUTABLE) and a merge field that is not a patient field
    (R-AUTH-NO-COMPOUND, R-SEND-SCOPE: the form describes this purpose's information and nothing else).
    The purpose is not a parameter: a version belongs to the purpose it was created for.
    """
    unknown = sorted(set(merge_fields) - set(PATIENT_FIELDS))
    if unknown:
        raise ValidationError(
            {"merge_fields": _("Not a patient field a form may list: %(fields)s.") % {"fields": ", ".join(unknown)}},
            code="unknown_field",
        )
    # Only the value of the chosen kind of expiry is kept, so the text and the stored form agree.
    kinds = AuthorizationForm.ExpiryKind
    values = {
        "title": title.strip(),
        "information_description": information_description,
        "merge_fields": [name for name in PATIENT_FIELDS if name in set(merge_fields)],
        "authorized_party": authorized_party,
        "recipients_description": recipients_description,
        "purpose_description": purpose_description,
        "expiry_kind": expiry_kind,
        "expiry_months": expiry_months if expiry_kind == kinds.MONTHS else None,
        "expiry_date": expiry_date if expiry_kind == kinds.DATE else None,
        "expiry_event": expiry_event if expiry_kind == kinds.EVENT else "",
        "signature_statement": signature_statement,
        "revocation_statement": revocation_statement,
        "revocation_address": revocation_address,
        "conditioning_statement": conditioning_statement,
        "redisclosure_statement": redisclosure_statement,
        "remuneration_statement": remuneration_statement,
    }
    with transaction.atomic():
        form = (
            AuthorizationForm.objects.select_for_update(of=("self",))
            .select_related("purpose", "translation_of")
            .get(pk=form_id)
        )
        _refuse_published(form)
        if form.translation_of_id is not None:
            # A translation says the same thing: what it ends with and which fields it lists are the original's.
            for field in TRANSLATION_FIXED_FIELDS:
                value = getattr(form.translation_of, field)
                values[field] = list(value) if isinstance(value, list) else value
        changed = [field for field, value in values.items() if getattr(form, field) != value]
        for field, value in values.items():
            setattr(form, field, value)
        form.full_clean()
        if changed:
            form.save(update_fields=changed)
            audit_record(
                actor=actor,
                action=actions.AUTHORIZATION_FORM_UPDATED,
                object_type="authorization_form",
                object_id=form.pk,
                details={"purpose_id": form.purpose_id, "version": form.version, "fields": changed},
            )
    return form


def form_version_publish(*, actor, form_id: int) -> AuthorizationForm:
    """Publish a complete draft: its text is fixed and hashed, and it becomes the version new signatures use.

    Refused with a ValidationError listing every missing element by name and rule (164.508(c)); each error's
    code is its rule id. A readability grade above the plain-language limit does not stop publishing, but
    is recorded in the audit event (R-AUTH-PLAIN).
    """
    with transaction.atomic():
        form = AuthorizationForm.objects.select_for_update().select_related("purpose").get(pk=form_id)
        _refuse_published(form)
        missing = form_version_missing_elements(form)
        if missing:
            raise ValidationError(
                [ValidationError(str(element), code=element.rule, params={"field": element.field})
                 for element in missing]
            )
        if form.translation_of_id is not None:
            _check_translation_publishable(form)
        readability = form_version_readability(form)
        form.status = AuthorizationForm.Status.PUBLISHED
        form.published_at = timezone.now()
        form.published_by = actor
        form.text_hash = text_hash(form_text(form))
        form.full_clean()
        form.save(update_fields=["status", "published_at", "published_by", "text_hash"])
        details = {
            "purpose_id": form.purpose_id,
            "purpose": form.purpose.code,
            "version": form.version,
            "text_hash": form.text_hash,
            "language": form.language,
        }
        if form.language == Language.ENGLISH:
            details["readability_grade"] = round(readability.score)
            if readability.too_hard:
                details["readability_warning"] = f"above_grade_{readability.limit}"
        else:
            details["translation_of_id"] = form.translation_of_id
            details["readability_inflesz"] = round(readability.score)
            if readability.too_hard:
                details["readability_warning"] = f"below_inflesz_{readability.limit}"
        audit_record(
            actor=actor,
            action=actions.AUTHORIZATION_FORM_PUBLISHED,
            object_type="authorization_form",
            object_id=form.pk,
            details=details,
        )
    return form


# What a translation copies from its original and may not change (ADR 0026): the same version says the same thing.
# expiry_event is text, but it is the event that ends the authorization, so it is translated once, when the draft is
# made, by the author, and checked with the rest before publishing.
TRANSLATION_FIXED_FIELDS = ("merge_fields", "expiry_kind", "expiry_months", "expiry_date")


def form_version_translation_create(*, actor, form_id: int, language: str = Language.SPANISH) -> AuthorizationForm:
    """A draft translation of a published English version: the same purpose and version number, every authored field
    copied for the author to translate, linked to the original (ADR 0026). One per version and language."""
    if language not in Language.values or language == Language.ENGLISH:
        raise ValidationError(_("Choose the language to translate the form into."), code="language")
    with transaction.atomic():
        original = AuthorizationForm.objects.select_for_update().select_related("purpose").get(pk=form_id)
        if original.language != Language.ENGLISH or original.status != AuthorizationForm.Status.PUBLISHED:
            raise ValidationError(
                _("Only a published English version can be translated. Publish it first."), code="not_published"
            )
        existing = AuthorizationForm.objects.filter(translation_of=original, language=language).first()
        if existing is not None:
            return existing
        form = AuthorizationForm(
            purpose=original.purpose, version=original.version, language=language, translation_of=original,
            created_by=actor,
        )
        for field in AUTHORED_FIELDS:
            value = getattr(original, field)
            setattr(form, field, list(value) if isinstance(value, list) else value)
        form.full_clean()
        form.save(force_insert=True)
        audit_record(
            actor=actor,
            action=actions.AUTHORIZATION_FORM_TRANSLATION_CREATED,
            object_type="authorization_form",
            object_id=form.pk,
            details={
                "purpose_id": original.purpose_id,
                "version": form.version,
                "language": language,
                "translation_of_id": original.pk,
            },
        )
    return form


def _check_translation_publishable(form: AuthorizationForm) -> None:
    original = form.translation_of
    if original.status != AuthorizationForm.Status.PUBLISHED or original.version != form.version:
        raise ValidationError(_("The English version this translates must be published first."), code="original")
    if any(getattr(form, field) != getattr(original, field) for field in TRANSLATION_FIXED_FIELDS):
        raise ValidationError(
            _("A translation must end and list the same patient fields as the English version."), code="mismatch"
        )


def _refuse_published(form: AuthorizationForm) -> None:
    if form.status == AuthorizationForm.Status.PUBLISHED:
        raise ValidationError(
            # R-AUTH-IMMUTABLE (policy: those who signed a version stay covered by exactly what they signed).
            _("Version %(version)s is published and can no longer change. Make a new version from it instead.")
            % {"version": form.version},
            code="published",
        )


def purpose_create(
    *,
    actor,
    code: str,
    name: str,
    description: str,
    kind: str,
    third_party_paid: bool = False,
    name_es: str = "",
    description_es: str = "",
) -> Purpose:
    purpose = Purpose(
        code=code, name=name, description=description, kind=kind, third_party_paid=third_party_paid,
        name_es=name_es.strip(), description_es=description_es.strip(),
    )
    purpose.full_clean()
    with transaction.atomic():
        purpose.save(force_insert=True)
        audit_record(
            actor=actor,
            action=actions.PURPOSE_CREATED,
            object_type="purpose",
            object_id=purpose.pk,
            details={"code": purpose.code, "kind": purpose.kind, "third_party_paid": purpose.third_party_paid},
        )
    return purpose


def purpose_tracking_set(*, actor, purpose_id: int, enabled: bool) -> Purpose:
    """Turn open and click tracking on or off for a purpose; setting it to what it is changes and audits nothing.
    Messages already sent keep what they were sent with; the next batch of a campaign follows the switch."""
    with transaction.atomic():
        purpose = Purpose.objects.select_for_update().get(pk=purpose_id)
        if purpose.tracking_enabled == enabled:
            return purpose
        purpose.tracking_enabled = enabled
        purpose.save(update_fields=["tracking_enabled"])
        audit_record(
            actor=actor,
            action=actions.PURPOSE_TRACKING_CHANGED,
            object_type="purpose",
            object_id=purpose.pk,
            details={"tracking_enabled": enabled},
        )
    return purpose
