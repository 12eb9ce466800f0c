"""The demo data (`manage.py demo_seed`, run by `make run`): made through the real services, every consent state
present, the launched campaign sent only to covered patients, and idempotent. Also `demo_totp`."""
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import CommandError, call_command
from django.db.models import Count
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.roles import roles_of
from audit.models import AuditEvent
from campaigns.models import Campaign, Delivery
from campaigns.selectors.campaigns import delivery_sent_without_coverage_count
from consent.models import Authorization, Patient, Purpose, Revocation
from consent.selectors.coverage import CoverageGap, authorization_covering_list
from hipaamail.management.commands import demo_seed

pytestmark = pytest.mark.django_db

STAFF_ROLES = {
    "marketer@demo.hipaamail.test": {"marketer"},
    "compliance@demo.hipaamail.test": {"compliance officer"},
    "admin@demo.hipaamail.test": {"administrator"},
}


def _seed(*args) -> str:
    out = StringIO()
    call_command("demo_seed", *args, stdout=out)
    return out.getvalue()


def _counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (
            get_user_model(),
            TOTPDevice,
            StaticDevice,
            Purpose,
            Patient,
            Authorization,
            Revocation,
            Campaign,
            Delivery,
            AuditEvent,
        )
    }


@pytest.fixture
def seeded() -> str:
    """The demo as `make run` makes it, sent in-process; its printed output."""
    return _seed("--send-now")


def test_staff_exist_with_roles_password_and_a_confirmed_totp_device(seeded):
    for email, roles in STAFF_ROLES.items():
        user = get_user_model().objects.get(email=email)
        assert roles_of(user) == roles
        assert user.check_password(demo_seed.DEMO_PASSWORD)
        assert user.emailaddress_set.filter(email=email, verified=True, primary=True).exists()
        device = TOTPDevice.objects.get(user=user, confirmed=True)
        assert StaticDevice.objects.get(user=user, confirmed=True).token_set.count() == 10
        # The documented, fixed keys make the demo reproducible.
        member = next(m for m in demo_seed.STAFF if m.email == email)
        assert device.key == member.totp_key_hex
    admin = get_user_model().objects.get(email="admin@demo.hipaamail.test")
    assert admin.is_superuser
    assert "demo-password-2026" in seeded and "http://localhost:8000/" in seeded and "127.0.0.1" not in seeded and "demo_totp" in seeded


def test_patients_in_every_authorization_state(seeded):
    purposes = {purpose.code: purpose for purpose in Purpose.objects.all()}
    assert set(purposes) == {"cpap-supplies", "diabetes-program", "refill-reminders"}
    assert purposes["diabetes-program"].third_party_paid
    assert purposes["refill-reminders"].kind == Purpose.Kind.TREATMENT
    assert Patient.objects.count() == demo_seed.PATIENT_COUNT
    now = timezone.now()
    for purpose in purposes.values():
        assert authorization_covering_list(purpose_id=purpose.pk).exists(), f"nobody covered for {purpose.code}"
        assert Authorization.objects.filter(purpose=purpose, expires_at__lt=now, signed_at__lt=now).exists()
        assert Revocation.objects.filter(authorization__purpose=purpose).exists()
    assert {"written", "portal"} <= set(Revocation.objects.values_list("channel", flat=True))
    assert Patient.objects.annotate(n=Count("authorizations")).filter(n=0).exists()
    diabetes_patients = Authorization.objects.filter(purpose=purposes["diabetes-program"]).values("patient_id")
    assert Patient.objects.filter(authorizations__isnull=False).exclude(pk__in=diabetes_patients).exists()


def test_diabetes_campaign_sent_only_to_covered_patients(seeded):
    draft = Campaign.objects.get(name="Spring CPAP supplies refresh")
    assert draft.status == Campaign.Status.DRAFT
    assert draft.created_by.email == "marketer@demo.hipaamail.test"
    assert not draft.deliveries.exists()

    campaign = Campaign.objects.get(name="Diabetes education program")
    assert campaign.status == Campaign.Status.SENT
    assert campaign.created_by.email == "marketer@demo.hipaamail.test"
    approvals = AuditEvent.objects.filter(action="campaign.approved", object_id=str(campaign.pk))
    assert [event.actor.email for event in approvals] == ["compliance@demo.hipaamail.test"]
    assert delivery_sent_without_coverage_count(campaign_id=campaign.pk) == 0
    assert campaign.deliveries.count() == Patient.objects.count()
    assert not campaign.deliveries.filter(status=Delivery.Status.QUEUED).exists()
    sent = campaign.deliveries.filter(status=Delivery.Status.SENT)
    assert sent.exists()
    blocked_reasons = set(
        campaign.deliveries.filter(status=Delivery.Status.BLOCKED).values_list("block_reason", flat=True)
    )
    assert {
        CoverageGap.NO_AUTHORIZATION,
        CoverageGap.EXPIRED,
        CoverageGap.REVOKED,
        CoverageGap.WRONG_PURPOSE,
    } <= blocked_reasons
    assert len(mail.outbox) == sent.count()
    assert sorted(m.to[0] for m in mail.outbox) == sorted(sent.values_list("patient__email", flat=True))


def test_running_again_creates_nothing(seeded):
    before = _counts()
    outbox = len(mail.outbox)
    output = _seed("--send-now")
    assert _counts() == before
    assert len(mail.outbox) == outbox
    assert "already present" in output


def test_without_send_now_the_campaign_waits_for_a_worker():
    _seed("--patients", "30", "-v", "0")
    campaign = Campaign.objects.get(name="Diabetes education program")
    assert campaign.status == Campaign.Status.SENDING
    assert campaign.deliveries.filter(status=Delivery.Status.QUEUED).exists()
    assert mail.outbox == []


def test_demo_totp_prints_the_current_code_of_the_device(settings):
    _seed("--patients", "20", "-v", "0")
    settings.DEBUG = True
    out = StringIO()
    call_command("demo_totp", "Compliance@demo.hipaamail.test", stdout=out, stderr=StringIO())
    code = out.getvalue().strip()
    assert len(code) == 6 and code.isdigit()
    device = TOTPDevice.objects.get(user__email="compliance@demo.hipaamail.test")
    assert device.verify_token(code)


def test_demo_totp_refuses_without_debug(settings):
    _seed("--patients", "20", "-v", "0")
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("demo_totp", "marketer@demo.hipaamail.test", stdout=StringIO())


def test_demo_totp_unknown_user(settings):
    settings.DEBUG = True
    with pytest.raises(CommandError, match="No user"):
        call_command("demo_totp", "nobody@demo.hipaamail.test", stdout=StringIO())


def test_the_demo_prints_an_api_key_that_the_readme_examples_use(seeded, client):
    assert demo_seed.DEMO_API_TOKEN in seeded
    response = client.get("/api/v1/purposes", headers={"Authorization": f"Bearer {demo_seed.DEMO_API_TOKEN}"})
    assert response.status_code == 200
    assert {item["code"] for item in response.json()["items"]} == set(demo_seed.PURPOSES)
    readme = (Path(settings.BASE_DIR) / "README.md").read_text()
    assert demo_seed.DEMO_API_TOKEN in readme
