"""What the production smoke test (test_production_smoke.py) does inside the installation, as an operator's
`python manage.py shell` would, under hipaamail.settings.production: staff through Django's `createsuperuser` and
the accounts services (a second factor enrolled with accounts.mfa, as the enrolment page does), a purpose with a
published form, patients, an invitation to sign; later a campaign written, approved by another person and launched.
Everything goes through the product's services; each step prints one JSON line for the test to read.

Not a test module (no test_ prefix): the test runs it in the production processes' environment.
"""
import json
import time
from datetime import timedelta

from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone
from django_otp.oath import totp

from accounts import mfa, roles
from campaigns.services import library
from campaigns.services.launch import campaign_launch
from campaigns.services.lifecycle import campaign_approve, campaign_create, campaign_submit
from consent.documents import form_text, text_hash
from consent.models import Authorization, Invitation, Purpose
from consent.services import form_versions, signing
from consent.services.authorizations import authorization_grant
from consent.services.form_versions import purpose_create
from consent.services.patients import patient_create
from hipaamail.management.commands.demo_seed import _FORM_COMMON, BLOCKS, CPAP, FORMS, PURPOSES, TEMPLATE

PURPOSE_CODE = CPAP
SIGNED_BEFORE = ("ana.lopez@example.org", "ben.okafor@example.org", "chen.wei@example.org")
SIGNER = "dana.reyes@example.org"


def _say(**values) -> None:
    print(json.dumps(values))


def _second_factor(user) -> str:
    """Enrol an authenticator app as the enrolment page does (a pending device confirmed with its first code);
    returns the device's hex key, which the test's "authenticator app" computes codes from."""
    device = mfa.totp_device_pending(user=user)
    code = f"{totp(device.bin_key, device.step, device.t0, device.digits):06d}"
    assert mfa.totp_device_confirm(user=user, device=device, token=code)
    return device.key


def _staff(email: str, role: str, password: str):
    """A staff member as an administrator sets one up (the admin's user form: a role, a verified address)."""
    user = get_user_model().objects.create_user(username=email.split("@")[0], email=email, password=password)
    user.groups.add(Group.objects.get(name=role))
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user


def setup(*, administrator: str, password: str) -> None:
    """After `createsuperuser`: staff with a second factor, a purpose, its form, patients, an invitation."""
    admin = get_user_model().objects.get(email=administrator)
    EmailAddress.objects.get_or_create(user=admin, email=administrator, defaults={"verified": True, "primary": True})
    marketer = _staff("marketer@riverside-health.org", roles.MARKETER, password)
    compliance = _staff("compliance@riverside-health.org", roles.COMPLIANCE_OFFICER, password)
    keys = {user.email: _second_factor(user) for user in (admin, marketer, compliance)}

    purpose = purpose_create(actor=admin, code=PURPOSE_CODE, **PURPOSES[PURPOSE_CODE])
    draft = form_versions.form_version_create(actor=compliance, purpose_id=purpose.pk)
    form_versions.form_version_update(actor=compliance, form_id=draft.pk, **(_FORM_COMMON | FORMS[PURPOSE_CODE]))
    form = form_versions.form_version_publish(actor=compliance, form_id=draft.pk)

    now = timezone.now()
    for n, email in enumerate(SIGNED_BEFORE):
        first, last = email.split("@")[0].split(".")
        patient = patient_create(actor=admin, email=email, full_name=f"{first.title()} {last.title()}",
                                 birth_year=1950 + n, sex="F", postal_code="62701")  # fmt: skip
        text = form_text(form)
        authorization_grant(
            actor=compliance, patient=patient, purpose=purpose, signed_at=now - timedelta(days=3),
            expires_at=now + timedelta(days=365), channel=Authorization.Channel.WRITTEN, form_version=form,
            document_text=text, text_hash=text_hash(text), signature_name=patient.full_name,
        )  # fmt: skip
    signer = patient_create(actor=admin, email=SIGNER, full_name="Dana Reyes", birth_year=1961, sex="F",
                            postal_code="62702")  # fmt: skip
    # The invitation is emailed by the transactional worker, over STARTTLS, to the test's SMTP server.
    signing.invitation_create(actor=compliance, patient_id=signer.pk, purpose_id=purpose.pk,
                              channel=Invitation.Channel.EMAIL)  # fmt: skip
    # The 30-second step whose codes the enrolments used: a code of that step is refused from now on (django-otp).
    _say(step="setup", totp_keys=keys, totp_step=int(time.time() // 30), purpose_id=purpose.pk, marketer=marketer.email)


def campaign_send(*, name: str, subject: str) -> None:
    """A campaign from the content library, written by the marketer, approved and launched by the compliance
    officer (never its author); the campaigns worker sends it."""
    User = get_user_model()
    marketer = User.objects.get(email="marketer@riverside-health.org")
    compliance = User.objects.get(email="compliance@riverside-health.org")
    template = library.email_template_create(actor=compliance, **TEMPLATE)
    template = library.library_item_approve(actor=compliance, kind="template", item_id=template.pk)
    block_name, block_html = BLOCKS["cpap-supplies"]
    block = library.content_block_create(actor=compliance, name=block_name, html=block_html)
    block = library.library_item_approve(actor=compliance, kind="block", item_id=block.pk)
    campaign = campaign_create(
        actor=marketer, name=name, purpose=Purpose.objects.get(code=PURPOSE_CODE),
        subject=subject,
        body_text="Dear {{ first_name }},\n\nOrder fresh CPAP supplies from Riverside Health.",
        template=template, blocks=[block],
    )  # fmt: skip
    campaign_submit(actor=marketer, campaign_id=campaign.pk)
    campaign_approve(actor=compliance, campaign_id=campaign.pk)
    campaign_launch(actor=compliance, campaign_id=campaign.pk)
    _say(step="campaign", campaign_id=campaign.pk)


def campaign_status(*, campaign_id: int) -> None:
    from campaigns.models import Campaign
    from campaigns.selectors.campaigns import delivery_outcome_counts

    status = Campaign.objects.values_list("status", flat=True).get(pk=campaign_id)
    _say(step="status", status=status, outcomes=delivery_outcome_counts(campaign_id=campaign_id))
