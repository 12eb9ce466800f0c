"""Amazon SES bounce and complaint notifications through SNS, received by django-anymail's webhook view
(R-BOUNCE-SUPPRESS). Payloads follow the SES notification examples (Amazon SES developer guide, "Amazon SNS
notification examples") and anymail's own tests: an SNS envelope whose Message is the SES event as JSON."""
import base64
import json
import logging
from unittest import mock

import pytest

from audit.models import AuditEvent
from campaigns.models import Delivery
from campaigns.tests.bounce_samples import delivery_sent
from consent import crypto
from consent.models import Suppression
from consent.tests.factories import patient_make

pytestmark = pytest.mark.django_db

URL = "/webhooks/amazon-ses/tracking/"
SECRET = "sns-user:Xq3-long-random-password"
TOPIC = "arn:aws:sns:us-east-1:123456789012:hipaamail-ses-events"


@pytest.fixture(autouse=True)
def _webhook_secret(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET}
    settings.HIPAAMAIL_SES_TOPIC_ARNS = []


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
    return {
        "Type": kind,
        "MessageId": "19ba9823-d7f2-53c1-860e-cb10e0d13dfc",
        "TopicArn": topic,
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps(message) + "\n" if isinstance(message, dict) else message,
        "Timestamp": "2026-11-25T14:59:59.675Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE-SIGNATURE==",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn...",
        **extra,
    }


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
    with mock.patch("campaigns.views_webhooks.requests.get") as get:
        get.return_value.status_code = 200
        response = _post(client, _sns("confirm", kind="SubscriptionConfirmation", SubscribeURL=good, Token="abc"),
                         **_auth())
    assert response.status_code == 200
    get.assert_called_once_with(good, timeout=10, allow_redirects=False)

    for bad in ("http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
                "https://sns.us-east-1.amazonaws.com.evil.example/confirm",
                "https://169.254.169.254/latest/meta-data/",
                "https://user@sns.us-east-1.amazonaws.com/"):
        with mock.patch("campaigns.views_webhooks.requests.get") as get:
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
