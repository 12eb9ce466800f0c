"""No back doors (issue 11, item 6): the Django admin changes no domain state, shows no patient identifier
unless it writes the audit row the product's own patient pages write, and shows no second-factor secret.

The walk iterates `admin.site._registry`, so a model registered tomorrow is walked too; and every model of the
domain apps is probed at its admin URLs whether it is registered or not, so neither registering nor unregistering
a model escapes the check. The data is made through the real services, one row at least of every domain model
(a new model without a row here fails `test_every_domain_model_has_a_row_to_walk`)."""
from datetime import date, timedelta

import pytest
from django import forms
from django.apps import apps
from django.contrib import admin
from django.forms import modelform_factory
from django.test import RequestFactory
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from audit.services import audit_checkpoint_create, audit_seal
from campaigns.services.launch import campaign_launch
from campaigns.services.segments import segment_save
from campaigns.tests.factories import block_make, campaign_approved_make, template_make
from consent import documents
from consent.models import Authorization, AuthorizationDefect, Invitation, Patient, Revocation, Suppression
from consent.patient_import.validate import COLUMNS
from consent.services import imports
from consent.services.authorizations import (
    authorization_defect_record,
    authorization_grant,
    authorization_revoke,
    expiry_event_record,
)
from consent.services.events import patient_event_record
from consent.services.signing import invitation_create
from consent.services.suppressions import suppression_record
from consent.tests.factories import authorization_make, form_published_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

# The apps whose models are domain state: the admin may only look at them, never change them.
DOMAIN_APPS = ("consent", "campaigns", "audit")
# What the admin is for: staff accounts, their groups and second factors, and the site's name. Anything else
# registered fails the walk until it is classified here or made read-only as domain state.
ACCOUNT_MODELS = {
    "auth.user",
    "auth.group",
    "sites.site",
    "account.emailaddress",
    "otp_totp.totpdevice",
    "otp_static.staticdevice",
}

NAME = "Wilhelmina Quarrington"
IDENTIFIERS = {
    "full_name": NAME,
    "email": "w.quarrington@example.org",
    "phone": "+1 217 555 0143",
    "street_address": "17 Larkspur Close",
    "birth_date": "1961-03-14",
    "external_id": "MRN-88412973",
}
SIGNED_IP = "203.0.113.77"
REPRESENTATIVE_AUTHORITY = "Durable power of attorney for Wilhelmina"


def _domain_models():
    return [model for label in DOMAIN_APPS for model in apps.get_app_config(label).get_models()]


def _label(model) -> str:
    return model._meta.label_lower


@pytest.fixture
def world():
    """One row at least of every domain model, through the real services."""
    officer = staff_make(role="compliance officer")
    purpose = purpose_make()
    form = form_published_make(purpose)
    patient = patient_make(
        email=IDENTIFIERS["email"],
        full_name=NAME,
        phone=IDENTIFIERS["phone"],
        street_address=IDENTIFIERS["street_address"],
        birth_date=date.fromisoformat(IDENTIFIERS["birth_date"]),
        external_id=IDENTIFIERS["external_id"],
        postal_code="62701",
        state="IL",
        condition_codes=["E11"],
        program_codes=["CPAP"],
    )
    text = documents.form_text(form)
    signed = authorization_make(
        patient=patient,
        purpose=purpose,
        form_version=form,
        document_text=text,
        text_hash=documents.text_hash(text),
        signature_name=NAME,
        signed_by_representative=True,
        representative_authority=REPRESENTATIVE_AUTHORITY,
        signed_ip=SIGNED_IP,
    )
    ended = patient_make()
    expiry_event_record(
        actor=officer,
        authorization_id=authorization_grant(
            actor=None, patient=ended, purpose=purpose, expires_at=None, expiry_event="End of the CPAP trial"
        ).pk,
        occurred_at=timezone.now() - timedelta(hours=1),
    )
    defective = patient_make()
    authorization_defect_record(
        actor=officer,
        authorization_id=authorization_make(patient=defective, purpose=purpose).pk,
        reason=AuthorizationDefect.Reason.COMPOUND,
    )
    patient_event_record(
        source="ehr", source_event_id="walk-1", patient_id=patient.pk, type="equipment.delivered",
        occurred_at=timezone.now() - timedelta(days=1), attributes={"equipment_type": "CPAP"},
    )
    revoked = patient_make()
    authorization_make(patient=revoked, purpose=purpose)
    authorization_revoke(
        actor=None, patient_id=revoked.pk, purpose_id=purpose.pk, channel=Revocation.Channel.PORTAL
    )
    suppression_record(actor=officer, email=patient_make().email, reason=Suppression.Reason.COMPLAINT)
    invitation_create(actor=officer, patient_id=patient_make().pk, purpose_id=purpose.pk, channel=Invitation.Channel.QR)
    header = ",".join(COLUMNS)
    imports.patient_import_upload(actor=officer, content=f"{header}\n".encode())
    segment_save(
        actor=officer, name="Springfield", rules={"op": "and", "rules": [{"field": "postal_code", "prefix": "627"}]}
    )
    campaign = campaign_approved_make(
        purpose=purpose, template=template_make(officer=officer), blocks=[block_make(officer=officer)]
    )
    campaign_launch(actor=None, campaign_id=campaign.pk)  # deliveries, sent by no worker here
    audit_seal()
    audit_checkpoint_create()
    return {"patient": patient, "authorization": signed, "campaign": campaign}


@pytest.fixture
def superuser():
    """The most powerful admin user there is: an administrator who is also a superuser."""
    user = staff_make(role="administrator")
    user.is_superuser = True
    user.save(update_fields=["is_superuser"])
    return user


@pytest.fixture
def admin_client(verified_client, superuser):
    verified_client.sign_in(user=superuser)
    return verified_client


def _request(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def _snapshot() -> dict:
    """Every row of every domain table, as the database holds it."""
    return {
        _label(model): {row[model._meta.pk.attname]: row for row in model._base_manager.order_by("pk").values()}
        for model in _domain_models()
    }


def _changed(value):
    """A different value of the same kind, so that an admin that accepted it would change the row."""
    if isinstance(value, str):
        return f"admin.{value}" if "@" in value else f"{value}admin"
    return value


def _post_data(model, obj, user) -> dict:
    """What the model's admin form would post for `obj`, every text changed: the admin's own form when the model
    is registered and editable (split date and time widgets and all), else a plain model form."""
    model_admin = admin.site._registry.get(model)
    form_class = None
    if model_admin is not None:
        form_class = model_admin.get_form(_request(user), obj, change=True)
    if form_class is None or not form_class.base_fields:
        form_class = modelform_factory(model, fields="__all__")
    form = form_class(instance=obj)
    data = {"_save": "Save"}
    for bound in form:
        field = bound.field
        widget = getattr(field.widget, "widget", field.widget)  # the admin wraps relations in a wrapper widget
        value = bound.value()
        if isinstance(field, forms.FileField):
            continue
        if isinstance(field, forms.CharField) and not isinstance(field, forms.JSONField):
            value = _changed(value)
        if isinstance(widget, forms.MultiWidget):
            parts = widget.decompress(value)
            for suffix, sub_widget, part in zip(widget.widgets_names, widget.widgets, parts, strict=True):
                data[f"{bound.html_name}{suffix}"] = sub_widget.format_value(part) or ""
        elif isinstance(widget, forms.CheckboxInput):
            if value:
                data[bound.html_name] = "on"
        elif isinstance(field, forms.ModelMultipleChoiceField):
            data[bound.html_name] = [str(getattr(item, "pk", item)) for item in value or []]
        elif isinstance(field, forms.JSONField):
            data[bound.html_name] = field.prepare_value(value)
        else:
            formatted = widget.format_value(value)
            data[bound.html_name] = "" if formatted is None else formatted
    return data


def _differences(old: dict, new: dict) -> list[str]:
    """What an admin did to a table: the rows added or removed, the columns changed (names only, no values)."""
    found = [f"row {pk} removed" for pk in old.keys() - new.keys()]
    found += [f"row {pk} added" for pk in new.keys() - old.keys()]
    for pk in old.keys() & new.keys():
        found += [f"row {pk}.{column}" for column in old[pk] if old[pk][column] != new[pk][column]]
    return sorted(found)


def _admin_url(model, suffix: str) -> str:
    return f"/admin/{model._meta.app_label}/{model._meta.model_name}/{suffix}"


def test_every_domain_model_has_a_row_to_walk(world):
    """The walk below proves nothing about a table it finds empty."""
    empty = [_label(model) for model in _domain_models() if not model._base_manager.exists()]

    assert empty == []


def test_r_min_necessary_the_admin_registers_only_accounts_and_read_only_domain_state(world, superuser):
    """R-AUTH-IMMUTABLE, R-RETAIN-6Y: for every registered admin, a domain model gives even a superuser no add,
    change or delete permission, no action and no editable inline, and its page shows no input for any of its
    fields; anything else registered is staff account management, named in ACCOUNT_MODELS."""
    request = _request(superuser)
    unclassified, writable = [], []
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label not in DOMAIN_APPS:
            if _label(model) not in ACCOUNT_MODELS:
                unclassified.append(_label(model))
            continue
        obj = model._base_manager.order_by("pk").first()
        grants = {
            "add": model_admin.has_add_permission(request),
            "change": model_admin.has_change_permission(request, obj),
            "delete": model_admin.has_delete_permission(request, obj),
            "actions": bool(model_admin.get_actions(request)),
        }
        for inline in model_admin.get_inline_instances(request, obj):
            grants[f"inline {inline.model._meta.model_name}"] = any(
                (inline.has_add_permission(request, obj), inline.has_change_permission(request, obj),
                 inline.has_delete_permission(request, obj))
            )
        writable += [f"{_label(model)}: {grant}" for grant, granted in grants.items() if granted]

    assert unclassified == []
    assert writable == []


def test_r_auth_immutable_posts_to_every_domain_models_admin_change_nothing(world, admin_client, superuser):
    """R-AUTH-IMMUTABLE, R-RETAIN-6Y, R-SEC-AUDIT: for every model of the domain apps, registered or not, a
    superuser's POST to its admin add, change and delete pages and a delete action on its list answers 403 (404
    when unregistered), and no row of any domain table differs afterwards (an approved campaign's subject and
    approver, a purpose, a patient, an authorization, the audit trail)."""
    admin_client.raise_request_exception = False  # a 500 is an answer to report too, not the end of the walk
    before = _snapshot()
    answers = {}
    for model in _domain_models():
        obj = model._base_manager.order_by("pk").first()
        data = _post_data(model, obj, superuser)
        registered = model in admin.site._registry
        expected = 403 if registered else 404
        for what, url, payload in (
            ("add", _admin_url(model, "add/"), data),
            ("change", _admin_url(model, f"{obj.pk}/change/"), data),
            ("delete", _admin_url(model, f"{obj.pk}/delete/"), {"post": "yes"}),
        ):
            status = admin_client.post(url, payload).status_code
            if status != expected:
                answers[f"{_label(model)} {what}"] = status
        admin_client.post(
            _admin_url(model, ""), {"action": "delete_selected", "_selected_action": [str(obj.pk)], "post": "yes"}
        )

    after = _snapshot()
    changed = {label: _differences(before[label], rows) for label, rows in after.items() if rows != before[label]}
    assert (answers, changed) == ({}, {})


def test_r_min_necessary_no_admin_page_shows_a_patient_identifier_without_the_audit_row(world, admin_client, superuser):
    """R-MIN-NECESSARY, R-SEC-AUDIT, R-NO-PHI-LEAK: every registered admin's list page, and the change and history
    page of each of its rows, read by a superuser. A list shows no identifier (name, email, phone, address, birth
    date, record number, the signature's name, the representative's authority, the signing IP). A detail page
    that shows one writes the same `patient.viewed` event (patient id, no PHI in details) that the product's own
    patient record writes; and the admin URLs of a patient, registered or not, never show one without it."""
    patient = world["patient"]
    secrets = [*IDENTIFIERS.values(), REPRESENTATIVE_AUTHORITY, SIGNED_IP]
    leaks, unaudited, broken = [], [], []

    def read(url: str, *, listing: bool, status: int = 200) -> None:
        last = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        response = admin_client.get(url)
        if response.status_code != status:
            broken.append(f"{url}: {response.status_code}")
        page = response.content.decode(errors="replace")
        shown = [secret for secret in secrets if secret in page]
        if not shown:
            return
        if listing:
            leaks.append(f"{url}: {shown}")
            return
        events = AuditEvent.objects.filter(pk__gt=last, action="patient.viewed", patient_id=patient.pk)
        if not events.filter(actor=superuser).exists() or any(
            secret in str(event.details) for event in events for secret in secrets
        ):
            unaudited.append(f"{url}: {shown}")

    for model, model_admin in admin.site._registry.items():
        read(_admin_url(model, ""), listing=True)
        for obj in model_admin.get_queryset(_request(superuser)).order_by("pk")[:50]:
            read(_admin_url(model, f"{obj.pk}/change/"), listing=False)
            read(_admin_url(model, f"{obj.pk}/history/"), listing=False)
    for model, obj_id in ((Patient, patient.pk), (Authorization, world["authorization"].pk)):
        status = 200 if model in admin.site._registry else 404
        read(_admin_url(model, f"{obj_id}/change/"), listing=False, status=status)
        read(_admin_url(model, f"?q={patient.pk}"), listing=True, status=status)

    assert leaks == []
    assert unaudited == []
    assert broken == []


def test_r_sec_mfa_the_admin_never_shows_a_second_factors_secret(admin_client, superuser):
    """R-SEC-MFA: an administrator manages staff devices in the admin (rename, remove) but never sees a TOTP key,
    its QR code or a recovery code, and cannot add a device (whose key the add form would show)."""
    member = staff_make(role="marketer", with_totp=True)
    totp = TOTPDevice.objects.get(user=member)
    static = StaticDevice.objects.create(user=member, name="Recovery codes", confirmed=True)
    StaticToken.objects.create(device=static, token="kq7rz2xw")
    key_forms = {totp.key, totp.key.upper(), totp.config_url.split("secret=")[1].split("&")[0]}

    pages = {
        "totp list": admin_client.get("/admin/otp_totp/totpdevice/"),
        "totp change": admin_client.get(f"/admin/otp_totp/totpdevice/{totp.pk}/change/"),
        "static list": admin_client.get("/admin/otp_static/staticdevice/"),
        "static change": admin_client.get(f"/admin/otp_static/staticdevice/{static.pk}/change/"),
    }

    assert {name: response.status_code for name, response in pages.items()} == dict.fromkeys(pages, 200)
    shown = {
        name: [secret for secret in (*key_forms, "kq7rz2xw", "qrcode") if secret in response.content.decode()]
        for name, response in pages.items()
    }
    assert shown == {name: [] for name in pages}
    for url in (
        f"/admin/otp_totp/totpdevice/{totp.pk}/config/",
        f"/admin/otp_totp/totpdevice/{totp.pk}/qrcode/",
        "/admin/otp_totp/totpdevice/add/",
        "/admin/otp_static/staticdevice/add/",
    ):
        assert admin_client.get(url).status_code in (403, 404), url
    # Removing a lost device stays possible: that is account management.
    response = admin_client.post(f"/admin/otp_totp/totpdevice/{totp.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(pk=totp.pk).exists()
