"""Every URL pattern of the resolver, with its parameters filled from one world of real objects (issue 16).

Shared by the tests that must reach every URL of the product: headers and methods
(hipaamail/tests/test_headers_and_methods.py) and the access matrix (hipaamail/tests/test_access_matrix.py). The
URLs are not listed by hand: django.urls.get_resolver() is walked, so a pattern added tomorrow is walked too, and one
whose parameters `world_make` cannot fill is reported by `targets`, which the tests turn into a failure.

The world's two patients carry distinctive identifiers (PATIENT_A, PATIENT_B: a name, an email address, a phone
number, a date of birth, a record number and a street address no page would show by chance), so that a test can
look for them in any response (R-NO-PHI-LEAK)."""
import re
from dataclasses import dataclass
from datetime import date

from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RoutePattern
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.access import access_level
from accounts.tests.factories import staff_make
from api.keys import api_key_create
from api.models import WebhookDelivery
from api.scopes import SCOPES
from api.webhooks import webhook_subscription_create
from campaigns.models import Delivery, Notice
from campaigns.sending.messages import unsubscribe_token
from campaigns.sending.tracking import link_token, tracking_token
from campaigns.services.launch import campaign_launch
from campaigns.services.segments import segment_save
from campaigns.tests.factories import block_make, campaign_approved_make, template_make
from consent import documents
from consent.models import Invitation
from consent.patient_import.validate import COLUMNS
from consent.services import imports, signing
from consent.services.events import patient_event_record
from consent.tests.factories import form_published_make, patient_make, purpose_make
from journeys.engine.intake import events_route
from journeys.tests.factories import journey_live_make, journey_purpose_make

# Patient A owns every patient object a URL names (the authorization, its PDF copy, the delivery behind the
# unsubscribe and tracking links, the invitation); patient B owns nothing a URL names and asks for A's.
PATIENT_A = {
    "full_name": "Zebulon Quillfeather",
    "email": "zebulon.quillfeather@example.org",
    "phone": "217-555-0142",
    "birth_date": date(1931, 7, 19),
    "external_id": "MRN-QX7731904",
    "street_address": "4417 Marrowbone Lane",
    "postal_code": "62701",
}
PATIENT_B = {
    "full_name": "Ottoline Vexworth",
    "email": "ottoline.vexworth@example.org",
    "phone": "217-555-0178",
    "birth_date": date(1944, 11, 3),
    "external_id": "MRN-VW5526018",
    "street_address": "902 Thistlewood Court",
    "postal_code": "62702",
}


def phi_strings(fields: dict) -> list[str]:
    """The strings of a patient's identifiers a response must not carry, in the forms a page might write them."""
    born: date = fields["birth_date"]
    given, family = fields["full_name"].split(" ", 1)
    return [
        fields["full_name"], given, family,
        fields["email"], fields["email"].split("@")[0],
        fields["phone"], fields["phone"].replace("-", ""),
        born.isoformat(), born.strftime("%m/%d/%Y"), born.strftime("%B %-d, %Y"),
        fields["external_id"],
        fields["street_address"], fields["street_address"].split(" ", 1)[1],
    ]


@dataclass(frozen=True)
class Target:
    route: str  # the pattern as declared, e.g. "consent/patients/<int:patient_id>/"
    name: str  # namespaced URL name, or the route when the pattern has none
    level: str  # accounts.access level: who may see it
    url: str
    callback: object  # the view the pattern resolves to


def patterns() -> list[tuple[str, str | None, URLPattern]]:
    """Every (route, name, pattern) of the resolver, in its order."""
    return list(_walk(get_resolver().url_patterns))


def _walk(patterns, prefix: str = "", namespace: str = ""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}:{pattern.namespace}" if namespace and pattern.namespace else (
                pattern.namespace or namespace
            )
            yield from _walk(pattern.url_patterns, prefix + _route(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern):
            name = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
            yield prefix + _route(pattern.pattern), name, pattern


def _route(pattern) -> str:
    text = str(pattern)
    if isinstance(pattern, RoutePattern):
        return text
    return text.removeprefix("^").removesuffix("$")


def world_make() -> dict:
    """One of every object a URL names, made through the real services and factories, and the staff who made them
    (an administrator who is also the Django admin's superuser, a compliance officer)."""
    officer = staff_make(role="compliance officer", with_totp=True)
    administrator = staff_make(role="administrator", with_totp=True)
    administrator.is_superuser = True  # the Django admin's pages need it; the role alone opens the product's
    administrator.save(update_fields=["is_superuser"])
    key = api_key_create(actor=administrator, name="EHR nightly sync", scopes=list(SCOPES))
    subscription = webhook_subscription_create(
        actor=administrator, api_key_id=key.key.pk, url="https://crm.example.org/hooks/hipaamail",
        event_types=["authorization.signed"],
    ).subscription

    purpose = purpose_make()
    form = form_published_make(purpose)
    patient = patient_make(**PATIENT_A)
    other_patient = patient_make(**PATIENT_B)
    text = documents.form_text(form)
    authorization = signing.authorization_sign(  # the portal's path: the PDF copy is rendered and stored
        patient_id=patient.pk, form_id=form.pk, shown_text_hash=documents.text_hash(text),
        signature_name=patient.full_name, intent_confirmed=True, signed_by_representative=False,
        representative_authority="", signed_ip="203.0.113.7", user_agent="pytest", invitation_id=None,
    )
    _, invitation_token = signing.invitation_create(
        actor=officer, patient_id=patient.pk, purpose_id=purpose.pk, channel=Invitation.Channel.QR
    )
    template, block = template_make(officer=officer), block_make(officer=officer)
    campaign = campaign_approved_make(purpose=purpose, template=template, blocks=[block])
    campaign_launch(actor=None, campaign_id=campaign.pk)
    delivery = Delivery.objects.get(campaign=campaign, patient=patient)
    segment = segment_save(
        actor=officer, name="Springfield", rules={"op": "and", "rules": [{"field": "postal_code", "prefix": "627"}]}
    )
    patient_import = imports.patient_import_upload(actor=officer, content=f"{','.join(COLUMNS)}\n".encode())
    journey = journey_live_make(purpose=journey_purpose_make())
    for enrolled in (patient, other_patient):  # both patients' care events, and both enrolled in the journey
        patient_event_record(
            source="ehr", source_event_id=f"delivered-{enrolled.pk}", patient_id=enrolled.pk,
            type="equipment.delivered", occurred_at=timezone.now(), attributes={"equipment_type": "CPAP"},
        )
    events_route()

    values = {
        "campaign_id": campaign.pk,
        "segment_id": segment.pk,
        "purpose_id": purpose.pk,
        "form_id": form.pk,
        "patient_id": patient.pk,
        "authorization_id": authorization.pk,
        "import_id": patient_import.pk,
        "journey_id": journey.pk,
        "key_id": key.key.pk,
        "subscription_id": subscription.pk,
        "delivery_id": delivery.pk,
        # The campaign's author's notice of its approval: nobody walking the URLs is its recipient (a 404).
        "notice_id": Notice.objects.filter(kind=Notice.Kind.APPROVED).values_list("pk", flat=True).first(),
        "version": "r5",
        "uidb36": "1",
        "key": "not-a-real-key",
        "app_label": "consent",
        "url": "nothing-here/",
        "content_type_id": "1",
        "id": str(administrator.pk),
        "pk": "1",
        # An admin object page names an object that does not exist (the admin answers with a redirect), except
        # the administrator's own user and email address below: ids of other models would match a row or not by
        # the luck of the sequences, which differ with the tests run before.
        "object_id": "999999999",
        "action": "approve",
    }
    # Parameters whose value depends on the URL they are in.
    own_address = EmailAddress.objects.get(user=administrator, primary=True).pk
    by_name = {
        **{
            f"admin:auth_user_{action}": {"object_id": str(administrator.pk), "id": str(administrator.pk)}
            for action in ("change", "delete", "history", "password_change")
        },
        **{f"admin:account_emailaddress_{action}": {"object_id": str(own_address)} for action in ("change", "delete", "history")},
        "content_item_action": {"kind": "block", "item_id": block.pk},
        "content_template_edit": {"item_id": template.pk},
        "content_block_edit": {"item_id": block.pk},
        "consent:patient_document": {"kind": "pdf"},
        "portal:invitation_open": {"token": invitation_token},
        "unsubscribe": {"token": unsubscribe_token(delivery.pk)},
        "tracking:open": {"token": tracking_token(delivery.pk)},
        "tracking:click": {
            "token": tracking_token(delivery.pk),
            "link": link_token(campaign_id=campaign.pk, url="https://riverside.example/cpap"),
        },
        "webhook_delivery_retry": {"delivery_id": _webhook_delivery_id(subscription)},
    }
    return {"values": values, "by_name": by_name, "administrator": administrator, "officer": officer,
            "patient": patient, "other_patient": other_patient, "authorization": authorization, "key": key}


def _webhook_delivery_id(subscription) -> int:
    outgoing = WebhookDelivery.objects.filter(subscription=subscription).order_by("pk").first()
    assert outgoing is not None, "signing should have queued a webhook delivery for the subscription"
    return outgoing.pk


_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)")


def targets(world) -> tuple[list[Target], list[str]]:
    """Every URL pattern with its parameters filled, and the patterns that could not be filled."""
    found, unfilled, seen = [], [], set()
    for route, name, pattern in patterns():
        short = (name or "").rsplit(":", 1)[-1]
        overrides = world["by_name"].get(name, world["by_name"].get(short, {}))

        def fill(match, overrides=overrides):
            parameter = match.group(1) or match.group(2)
            value = overrides.get(parameter, world["values"].get(parameter))
            if value is None:
                raise KeyError(parameter)
            return str(value)

        try:
            url = "/" + _PARAMETER.sub(fill, route)
        except KeyError as missing:
            unfilled.append(f"{route} (parameter {missing})")
            continue
        if url in seen:
            continue  # the API declares one path once per method (a GET and a POST operation): one URL, one view
        seen.add(url)
        if resolve(url).func is not pattern.callback:
            unfilled.append(f"{route} (filled as {url}, which resolves elsewhere)")
            continue
        found.append(
            Target(route=route, name=name or route, level=access_level(pattern.callback), url=url,
                   callback=pattern.callback)
        )
    return found, unfilled


def staff_client(user, *, verified: bool = True) -> Client:
    """A client signed in as `user`; past the second factor (their confirmed TOTP device) when `verified`."""
    client = Client()
    client.force_login(user)
    if verified:
        device = TOTPDevice.objects.filter(user=user, confirmed=True).first() or TOTPDevice.objects.create(
            user=user, name="Authenticator app", confirmed=True
        )
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()
    return client


def portal_client(patient) -> Client:
    """A client signed in to the portal as `patient`, the patient's way: the address, then the emailed code."""
    client = Client()
    client.post("/my/sign-in/", {"email": patient.email})
    code = re.search(r"Your code is: (\d{6})", mail.outbox[-1].body).group(1)
    assert client.post("/my/code/", {"code": code}).status_code == 302
    return client


def api_client(token: str) -> Client:
    return Client(headers={"Authorization": f"Bearer {token}"})
