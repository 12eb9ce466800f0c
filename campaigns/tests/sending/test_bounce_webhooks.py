"""Amazon SES bounce and complaint notifications through SNS, received by django-anymail's webhook view
(R-BOUNCE-SUPPRESS). Payloads follow the SES notification examples (Amazon SES developer guide, "Amazon SNS
notification examples") and anymail's own tests: an SNS envelope whose Message is the SES event as JSON, signed
as SNS signs it, with a test certificate standing in for the one SNS publishes."""
import base64
import json
import logging
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from audit.models import AuditEvent
from campaigns.models import Delivery
from campaigns.tests.bounce_samples import delivery_sent
from campaigns.views import webhooks as views_webhooks
from consent import crypto
from consent.models import Suppression
from consent.tests.factories import patient_make

pytestmark = pytest.mark.django_db

URL = "/webhooks/amazon-ses/tracking/"
SECRET = "sns-user:Xq3-long-random-password"
TOPIC = "arn:aws:sns:us-east-1:123456789012:hipaamail-ses-events"


CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000.pem"


def _certificate(key) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256())
    )


SNS_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SNS_CERTIFICATE = _certificate(SNS_KEY)
REAL_SNS_CERTIFICATE = views_webhooks._sns_certificate


@pytest.fixture(autouse=True)
def _webhook_secret(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET}
    settings.HIPAAMAIL_SES_TOPIC_ARNS = []
    settings.HIPAAMAIL_SES_VERIFY_SNS_SIGNATURES = True


@pytest.fixture(autouse=True)
def sns_certificates():
    """The certificate fetch (it leaves the project): our test certificate at CERT_URL, nothing elsewhere."""
    fetched: list[str] = []

    def certificate(url):
        fetched.append(url)
        if url != CERT_URL:
            raise AssertionError(f"unexpected certificate fetch {url}")
        return SNS_CERTIFICATE

    with mock.patch.object(views_webhooks, "_sns_certificate", side_effect=certificate):
        yield fetched


def _sign(sns: dict, key=SNS_KEY, version: str = "2") -> dict:
    """Sign as SNS does: the message type's fields as "Name\\nvalue\\n", RSA PKCS#1 v1.5 with SHA1 or SHA256."""
    fields = views_webhooks._SNS_SIGNED_FIELDS[sns["Type"]]
    text = "".join(f"{name}\n{sns[name]}\n" for name in fields if name != "Subject" or name in sns)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(text.encode(), padding.PKCS1v15(), algorithm)
    return sns | {"SignatureVersion": version, "Signature": base64.b64encode(signature).decode()}


def _auth(credentials: str = SECRET) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(credentials.encode()).decode()}


def _ses_mail(delivery: Delivery, recipient: str) -> dict:
    """SES's mail object: its own messageId, and our headers as sent (headersTruncated false)."""
    return {
        "timestamp": "2026-11-25T14:59:38.237Z",
        "source": "news@riverside-health.example",
        "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/riverside-health.example",
        "sendingAccountId": "123456789012",
        "messageId": "0100018f2c3b4d5e-6a7b8c9d-0e1f-2a3b-4c5d-6e7f8a9b0c1d-000000",
        "destination": [recipient],
        "headersTruncated": False,
        "headers": [
            {"name": "From", "value": "Riverside Health <news@riverside-health.example>"},
            {"name": "To", "value": recipient},
            {"name": "Subject", "value": "News for you"},
            {"name": "Message-ID", "value": delivery.message_id},
            {"name": "List-Unsubscribe-Post", "value": "List-Unsubscribe=One-Click"},
        ],
        "commonHeaders": {
            "from": ["Riverside Health <news@riverside-health.example>"],
            "to": [recipient],
            "messageId": delivery.message_id,
            "subject": "News for you",
        },
    }


def _bounce_event(delivery, recipient, bounce_type="Permanent", sub_type="General", status="5.1.1"):
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": sub_type,
            "bouncedRecipients": [
                {
                    "emailAddress": recipient,
                    "action": "failed",
                    "status": status,
                    "diagnosticCode": f"smtp; 550 {status} <{recipient}>... User unknown",
                }
            ],
            "timestamp": "2026-11-25T14:59:44.101Z",
            "feedbackId": "0100018f2c3b4d5e-11112222-3333-4444-5555-666677778888-000000",
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
            "remoteMtaIp": "192.0.2.10",
        },
        "mail": _ses_mail(delivery, recipient),
    }


def _complaint_event(delivery, recipient):
    return {
        "notificationType": "Complaint",
        "complaint": {
            "userAgent": "AnyCompany Feedback Loop (V0.01)",
            "complainedRecipients": [{"emailAddress": recipient}],
            "complaintFeedbackType": "abuse",
            "arrivalDate": "2026-11-25T14:59:52.000Z",
            "timestamp": "2026-11-25T14:59:53.000Z",
            "feedbackId": "0100018f2c3b4d5e-99990000-aaaa-bbbb-cccc-ddddeeeeffff-000000",
        },
        "mail": _ses_mail(delivery, recipient),
    }


def _sns(message, *, kind="Notification", topic=TOPIC, **extra) -> dict:
    sns = {
        "Type": kind,
        "MessageId": "19ba9823-d7f2-53c1-860e-cb10e0d13dfc",
        "TopicArn": topic,
        "Message": json.dumps(message) + "\n" if isinstance(message, dict) else message,
        "Timestamp": "2026-11-25T14:59:59.675Z",
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn...",
        **extra,
    }
    if kind == "Notification":
        sns["Subject"] = "Amazon SES Email Event Notification"
    return _sign(sns)


def _post(client, sns: dict, **headers):
    return client.post(
        URL,
        data=json.dumps(sns),
        content_type="text/plain; charset=UTF-8",  # SNS posts JSON as text/plain
        HTTP_X_AMZ_SNS_MESSAGE_ID=sns["MessageId"],
        HTTP_X_AMZ_SNS_MESSAGE_TYPE=sns["Type"],
        **headers,
    )


def _suppression(email: str) -> Suppression | None:
    return Suppression.objects.filter(email_digest=crypto.lookup_digest(email)).first()


def test_r_bounce_suppress_ses_permanent_bounce_marks_hard_and_suppresses(client, caplog):
    """R-BOUNCE-SUPPRESS, R-NO-PHI-LEAK: a Permanent bounce from SES, posted by SNS with the webhook's basic
    auth and no session, marks the delivery hard-bounced and suppresses the address; nothing logged names it."""
    delivery = delivery_sent(patient=patient_make(email="jane@example.org"))
    caplog.set_level(logging.DEBUG)

    response = _post(client, _sns(_bounce_event(delivery, "jane@example.org")), **_auth())

    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.bounce_type == "hard" and delivery.bounced_at is not None
    assert (_suppression("jane@example.org").reason, _suppression("jane@example.org").smtp_code) == ("hard_bounce", "5.1.1")
    assert AuditEvent.objects.get(action="delivery.bounced").details == {
        "kind": "hard", "status": "5.1.1", "source": "ses", "campaign_id": delivery.campaign_id
    }
    assert "jane" not in caplog.text


@pytest.mark.parametrize("bounce_type", ["Transient", "Undetermined"])
def test_r_bounce_suppress_ses_transient_bounce_is_soft_and_does_not_suppress_alone(client, bounce_type):
    delivery = delivery_sent(patient=patient_make(email="full@example.org"))

    response = _post(
        client, _sns(_bounce_event(delivery, "full@example.org", bounce_type, "MailboxFull", "4.2.2")), **_auth()
    )

    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.bounce_type == "soft"
    assert _suppression("full@example.org") is None


def test_r_bounce_suppress_ses_complaint_suppresses(client):
    delivery = delivery_sent(patient=patient_make(email="annoyed@example.org"))

    response = _post(client, _sns(_complaint_event(delivery, "annoyed@example.org")), **_auth())

    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.complained_at is not None
    assert _suppression("annoyed@example.org").reason == "complaint"


def test_r_bounce_suppress_ses_retry_of_the_same_notification_records_once(client):
    delivery = delivery_sent(patient=patient_make(email="jane@example.org"))
    sns = _sns(_bounce_event(delivery, "jane@example.org"))

    assert _post(client, sns, **_auth()).status_code == 200
    assert _post(client, sns, **_auth()).status_code == 200

    assert AuditEvent.objects.filter(action="delivery.bounced").count() == 1


def test_ses_notification_for_a_message_id_we_do_not_know_is_accepted_and_ignored(client):
    """SES's own Message-ID (a message not sent by the campaign sender) names no delivery: 200, nothing done."""
    delivery = delivery_sent(patient=patient_make(email="jane@example.org"))
    event = _bounce_event(delivery, "jane@example.org")
    event["mail"]["headers"] = []
    event["mail"]["commonHeaders"]["messageId"] = "<0100018f2c3b4d5e@email.amazonses.com>"

    assert _post(client, _sns(event), **_auth()).status_code == 200

    assert not Suppression.objects.exists()


@pytest.mark.parametrize("event_type", ["Delivery", "Send", "Open"])
def test_other_ses_events_record_nothing(client, event_type):
    delivery = delivery_sent(patient=patient_make(email="jane@example.org"))
    event = {"eventType": event_type, "mail": _ses_mail(delivery, "jane@example.org"),
             "delivery": {"recipients": ["jane@example.org"], "smtpResponse": "250 ok"}, "open": {}, "send": {}}

    assert _post(client, _sns(event), **_auth()).status_code == 200

    delivery.refresh_from_db()
    assert delivery.bounced_at is None and not Suppression.objects.exists()


def test_without_credentials_sns_is_asked_for_them_and_nothing_is_recorded(client):
    delivery = delivery_sent(patient=patient_make(email="jane@example.org"))

    response = _post(client, _sns(_bounce_event(delivery, "jane@example.org")))

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Basic realm="Anymail WEBHOOK_SECRET"'
    assert not Suppression.objects.exists()


def test_wrong_credentials_are_refused_and_nothing_is_recorded(client):
    delivery = delivery_sent(patient=patient_make(email="jane@example.org"))

    response = _post(client, _sns(_bounce_event(delivery, "jane@example.org")), **_auth("sns-user:guess"))

    assert response.status_code == 400
    assert not Suppression.objects.exists()
    delivery.refresh_from_db()
    assert delivery.bounced_at is None


def test_without_a_configured_secret_the_webhook_does_not_exist(client, settings):
    """anymail alone would accept anyone's posts with a warning; we answer 404 until a secret is set."""
    settings.ANYMAIL = {}
    delivery = delivery_sent(patient=patient_make(email="jane@example.org"))

    response = _post(client, _sns(_bounce_event(delivery, "jane@example.org")), **_auth())

    assert response.status_code == 404
    assert not Suppression.objects.exists()


def test_a_topic_outside_the_allowed_list_is_refused(client, settings):
    settings.HIPAAMAIL_SES_TOPIC_ARNS = [TOPIC]
    delivery = delivery_sent(patient=patient_make(email="jane@example.org"))
    other_topic = "arn:aws:sns:us-east-1:999999999999:someone-else"

    refused = _post(client, _sns(_bounce_event(delivery, "jane@example.org"), topic=other_topic), **_auth())
    assert refused.status_code == 400 and not Suppression.objects.exists()

    accepted = _post(client, _sns(_bounce_event(delivery, "jane@example.org")), **_auth())
    assert accepted.status_code == 200 and _suppression("jane@example.org") is not None


@pytest.mark.parametrize(
    "body",
    ["not json", json.dumps({"Type": "Notification", "MessageId": "m-1", "Message": "{not json"}),
     json.dumps({"Type": "Notification", "MessageId": "m-1", "Message": json.dumps({"notificationType": "Bounce"})}),
     json.dumps(["a", "list"])],
    ids=["not-json", "message-not-json", "bounce-without-fields", "json-list"],
)
def test_malformed_posts_get_a_400_never_a_500(client, body):
    response = client.post(
        URL, data=body, content_type="text/plain", HTTP_X_AMZ_SNS_MESSAGE_ID="m-1",
        HTTP_X_AMZ_SNS_MESSAGE_TYPE="Notification", **_auth(),
    )

    assert response.status_code == 400


def test_subscription_confirmation_is_fetched_from_sns_only(client):
    """After the basic auth passed, the SubscribeURL is visited when it is an https SNS address, and never
    when it points anywhere else (the body is attacker-controlled text)."""
    good = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC + "&Token=abc"
    with mock.patch("campaigns.views.webhooks.requests.get") as get:
        get.return_value.status_code = 200
        response = _post(client, _sns("confirm", kind="SubscriptionConfirmation", SubscribeURL=good, Token="abc"),
                         **_auth())
    assert response.status_code == 200
    get.assert_called_once_with(good, timeout=10, allow_redirects=False)

    for bad in ("http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
                "https://sns.us-east-1.amazonaws.com.evil.example/confirm",
                "https://169.254.169.254/latest/meta-data/",
                "https://user@sns.us-east-1.amazonaws.com/"):
        with mock.patch("campaigns.views.webhooks.requests.get") as get:
            response = _post(client, _sns("confirm", kind="SubscriptionConfirmation", SubscribeURL=bad, Token="abc"),
                             **_auth())
        assert response.status_code == 400, bad
        get.assert_not_called()


def test_the_webhook_is_public_and_needs_no_csrf_token(client):
    """Deny by default has an explicit exception here (public()); SNS has no session and no CSRF token."""
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    delivery = delivery_sent(patient=patient_make(email="jane@example.org"))

    response = _post(strict, _sns(_bounce_event(delivery, "jane@example.org")), **_auth())

    assert response.status_code == 200 and _suppression("jane@example.org") is not None


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda sns: _sign(sns, key=OTHER_KEY), id="signed-by-another-key"),
        pytest.param(lambda sns: sns | {"Message": sns["Message"].replace("Permanent", "Transient")}, id="message-changed"),
        pytest.param(lambda sns: sns | {"TopicArn": "arn:aws:sns:us-east-1:999999999999:other"}, id="topic-changed"),
        pytest.param(lambda sns: {k: v for k, v in sns.items() if k != "Signature"}, id="no-signature"),
        pytest.param(lambda sns: sns | {"SignatureVersion": "3"}, id="unknown-version"),
        pytest.param(lambda sns: sns | {"Signature": "not base64!"}, id="garbage-signature"),
    ],
)
def test_r_bounce_suppress_a_notification_sns_did_not_sign_is_refused_even_with_the_secret(client, forge):
    """Whoever has the webhook's password still cannot forge a bounce: the SNS signature must verify."""
    delivery = delivery_sent(patient=patient_make(email="jane@example.org"))

    response = _post(client, forge(_sns(_bounce_event(delivery, "jane@example.org"))), **_auth())

    assert response.status_code == 400
    assert not Suppression.objects.exists()
    delivery.refresh_from_db()
    assert delivery.bounced_at is None


@pytest.mark.parametrize(
    "url",
    ["https://evil.example/SimpleNotificationService-0000000000.pem",
     "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000.pem",
     "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
     "https://sns.us-east-1.amazonaws.com/not-a-certificate"],
)
def test_a_signing_certificate_outside_sns_is_never_fetched(client, sns_certificates, url):
    delivery = delivery_sent(patient=patient_make(email="jane@example.org"))
    sns = _sns(_bounce_event(delivery, "jane@example.org"), SigningCertURL=url)

    response = _post(client, sns, **_auth())

    assert response.status_code == 400
    assert sns_certificates == []
    assert not Suppression.objects.exists()


def test_signature_version_1_sha1_is_accepted(client):
    delivery = delivery_sent(patient=patient_make(email="jane@example.org"))
    sns = _sign(_sns(_bounce_event(delivery, "jane@example.org")), version="1")

    assert _post(client, sns, **_auth()).status_code == 200
    assert Suppression.objects.count() == 1


def test_the_certificate_is_fetched_once_over_https_from_sns():
    fetch = REAL_SNS_CERTIFICATE  # the real function, not the autouse stand-in
    fetch.cache_clear()
    with mock.patch("campaigns.views.webhooks.requests.get") as get:
        get.return_value.content = SNS_CERTIFICATE.public_bytes(serialization.Encoding.PEM)
        assert fetch(CERT_URL) == SNS_CERTIFICATE
        assert fetch(CERT_URL) == SNS_CERTIFICATE
    fetch.cache_clear()

    get.assert_called_once_with(CERT_URL, timeout=10, allow_redirects=False)
