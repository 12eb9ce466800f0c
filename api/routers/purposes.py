"""Purposes: what a patient can authorize, with its kind and the form version signatures are recorded against."""
from datetime import date, datetime

from ninja import Router, Schema

from api.auth import KeyAuth
from api.problems import error_responses
from api.scopes import PURPOSES_READ
from consent.models import Purpose
from consent.selectors.form_versions import form_version_current

router = Router(tags=["purposes"])


class FormVersionOut(Schema):
    version: int
    title: str
    published_at: datetime
    expiry_kind: str
    expiry_months: int | None
    expiry_date: date | None
    expiry_event: str
    merge_fields: list[str]


class PurposeOut(Schema):
    code: str
    name: str
    kind: str  # "marketing" (needs a HIPAA authorization) or "treatment" (needs a stored consent to email)
    third_party_paid: bool
    tracking_enabled: bool
    current_form: FormVersionOut | None


class PurposeList(Schema):
    items: list[PurposeOut]
    next_cursor: str | None = None


def purpose_out(purpose: Purpose) -> dict:
    form = form_version_current(purpose_id=purpose.pk)
    return {
        "code": purpose.code,
        "name": purpose.name,
        "kind": purpose.kind,
        "third_party_paid": purpose.third_party_paid,
        "tracking_enabled": purpose.tracking_enabled,
        "current_form": None
        if form is None
        else {
            "version": form.version,
            "title": form.title,
            "published_at": form.published_at,
            "expiry_kind": form.expiry_kind,
            "expiry_months": form.expiry_months,
            "expiry_date": form.expiry_date,
            "expiry_event": form.expiry_event,
            "merge_fields": list(form.merge_fields or []),
        },
    }


@router.get("", response={200: PurposeList, **error_responses()}, auth=KeyAuth(PURPOSES_READ), summary="List purposes")
def purpose_list(request):
    """Every purpose, by code, with its kind and its current (newest published) form version, if any. There are
    few purposes: one page holds them all."""
    return {"items": [purpose_out(purpose) for purpose in Purpose.objects.order_by("code")], "next_cursor": None}
