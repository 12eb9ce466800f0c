"""The audit log's names for ids (audit.naming): registered here, in the top layer, because the audit app imports no
other app and this one may import them all. Only the names the audit log's readers may see: campaigns, journeys,
segments, library items, purposes and forms (compliance officers and administrators see all of them); API keys
for administrators only (the integrations pages are theirs). Never a patient: the log shows patients by number."""
from accounts.roles import ADMINISTRATOR, roles_of
from audit.naming import namer_register


def _integer_ids(ids: set[str]) -> list[int]:
    return [int(value) for value in ids if value.isdigit() and len(value) < 19]


def _by_id(model, field: str = "name"):
    def namer(ids: set[str], viewer) -> dict[str, str]:
        rows = model.objects.filter(pk__in=_integer_ids(ids)).values_list("pk", field)
        return {str(pk): name for pk, name in rows}

    return namer


def _purposes_by_code(codes: set[str], viewer) -> dict[str, str]:
    from consent.models import Purpose

    return dict(Purpose.objects.filter(code__in=list(codes)).values_list("code", "name"))


def _forms(ids: set[str], viewer) -> dict[str, str]:
    from consent.models import AuthorizationForm

    rows = AuthorizationForm.objects.filter(pk__in=_integer_ids(ids)).values_list("pk", "purpose__name", "version")
    return {str(pk): f"“{name}”, version {version}" for pk, name, version in rows}


def _api_keys(ids: set[str], viewer) -> dict[str, str]:
    from api.models import ApiKey

    if viewer is None or ADMINISTRATOR not in roles_of(viewer):
        return {}
    return {str(pk): name for pk, name in ApiKey.objects.filter(pk__in=_integer_ids(ids)).values_list("pk", "name")}


def register() -> None:
    from campaigns.models import Campaign, ContentBlock, EmailTemplate, Segment
    from consent.models import Purpose
    from journeys.models import Journey

    namer_register("campaign", _by_id(Campaign))
    namer_register("journey", _by_id(Journey))
    namer_register("segment", _by_id(Segment))
    namer_register("email_template", _by_id(EmailTemplate))
    namer_register("content_block", _by_id(ContentBlock))
    namer_register("purpose", _by_id(Purpose))
    namer_register("purpose_code", _purposes_by_code)
    namer_register("authorization_form", _forms)
    namer_register("api_key", _api_keys)
