"""Behind the documented proxy every request comes from 127.0.0.1: the signature's evidence and the audit trail
record the client's own address, as the proxy forwarded it (TRUSTED_PROXY_COUNT), never the proxy's
(R-AUTH-ESIGN, R-SEC-AUDIT)."""
import pytest

from audit.models import AuditEvent
from consent.models import Authorization
from consent.tests.services.test_signing import invited, prove_email, sign_data  # noqa: F401 (invited: a fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_throttle_and_media")]


@pytest.mark.parametrize("proxies, expected", [(1, "203.0.113.9"), (0, "127.0.0.1")])
def test_r_auth_esign_the_signature_records_the_signers_own_address_behind_the_proxy(
    client, invited, settings, proxies, expected  # noqa: F811
):
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = proxies
    patient, purpose, form_version, _, token = invited
    prove_email(client, token)

    client.post(
        f"/my/sign/{purpose.pk}/", sign_data(form_version), REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9"
    )

    authorization = Authorization.objects.get(patient=patient, purpose=purpose)
    assert authorization.signed_ip == expected  # with no proxy trusted, a forwarded header is not believed
    granted = AuditEvent.objects.get(action="authorization.granted", object_id=str(authorization.pk))
    assert granted.ip == expected
