"""Report messages as mail servers write them, for the bounce tests: RFC 3464 delivery-status notifications
(Postfix's layout with text/rfc822-headers; Exchange's with the whole message/rfc822), a delayed-delivery
warning, and an RFC 5965 abuse report (the RFC's own example, addressed to one of our messages)."""
from unittest import mock

from campaigns.models import Delivery
from campaigns.sending.dispatch import delivery_dispatch_batch
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import campaign_approved_make
from consent.tests.factories import authorization_make, patient_make, purpose_make


def delivery_sent(*, patient=None, purpose=None) -> Delivery:
    """A delivery sent through the real pipeline (locmem outbox), with its Message-ID recorded."""
    purpose = purpose or purpose_make()
    patient = patient or patient_make()
    if not patient.authorizations.filter(purpose=purpose).exists():
        authorization_make(patient=patient, purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)
    delivery_dispatch_batch(campaign_id=campaign.pk)
    delivery = Delivery.objects.get(campaign=campaign, patient=patient)
    assert delivery.status == "sent" and delivery.message_id
    return delivery


def postfix_dsn(*, recipient: str, message_id: str, action: str = "failed", status: str = "5.1.1",
                diagnostic: str = "smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown") -> bytes:
    """Postfix's bounce: human part, message/delivery-status, text/rfc822-headers of the returned message."""
    diagnostic = diagnostic.format(recipient=recipient)
    return f"""Return-Path: <>
Received: by mx.example.net (Postfix) id 8A1B2C3D4E; Wed, 25 Nov 2026 10:00:00 +0000 (UTC)
Date: Wed, 25 Nov 2026 10:00:00 +0000 (UTC)
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: bounces@riverside-health.example
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="8A1B2C3D4E.1795600800/mx.example.net"
Content-Transfer-Encoding: 7bit
Message-Id: <20261125100000.8A1B2C3D4E@mx.example.net>

This is a MIME-encapsulated message.

--8A1B2C3D4E.1795600800/mx.example.net
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

                   The mail system

<{recipient}>: host mx.example.org[192.0.2.10] said: {diagnostic[6:]}
    (in reply to RCPT TO command)

--8A1B2C3D4E.1795600800/mx.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: 8A1B2C3D4E
X-Postfix-Sender: rfc822; bounces@riverside-health.example
Arrival-Date: Wed, 25 Nov 2026 09:59:58 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.org
Diagnostic-Code: {diagnostic}

--8A1B2C3D4E.1795600800/mx.example.net
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <bounces@riverside-health.example>
Received: from hipaamail (localhost [127.0.0.1]) by mx.example.net (Postfix) with ESMTP id 8A1B2C3D4E
From: Riverside Health <news@riverside-health.example>
Subject: News for you
MIME-Version: 1.0
To: {recipient}
Date: Wed, 25 Nov 2026 09:59:57 GMT
Message-ID: {message_id}
List-Unsubscribe: <https://mail.riverside-health.example/unsubscribe/x/>
List-Unsubscribe-Post: List-Unsubscribe=One-Click
Content-Type: multipart/alternative; boundary="=_hm0123"

--8A1B2C3D4E.1795600800/mx.example.net--
""".replace("\n", "\r\n").encode()


def exchange_dsn(*, recipient: str, message_id: str, status: str = "5.2.2") -> bytes:
    """Exchange's layout: the whole returned message as message/rfc822, no Original-Recipient, and a
    diagnostic in Exchange's words."""
    return f"""From: postmaster@outlook.example
To: bounces@riverside-health.example
Date: Wed, 25 Nov 2026 10:05:00 +0000
Subject: Undeliverable: News for you
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="_000_DSN_boundary_"
Message-ID: <dsn-1@outlook.example>
Auto-Submitted: auto-replied

--_000_DSN_boundary_
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

Delivery has failed to these recipients or groups:

{recipient}
The recipient's mailbox is full and can't accept messages now.

--_000_DSN_boundary_
Content-Type: message/delivery-status

Reporting-MTA: dns;BN8PR01MB1234.prod.outlook.example
Received-From-MTA: dns;mail.riverside-health.example
Arrival-Date: Wed, 25 Nov 2026 10:04:58 +0000

Final-Recipient: rfc822;{recipient}
Action: failed
Status: {status}
Diagnostic-Code: smtp;552 {status} STOREDRV.Deliver; mailbox full
X-Display-Name: Patient

--_000_DSN_boundary_
Content-Type: message/rfc822

Return-Path: <bounces@riverside-health.example>
From: Riverside Health <news@riverside-health.example>
To: {recipient}
Subject: News for you
Date: Wed, 25 Nov 2026 10:04:57 GMT
Message-ID: {message_id}
MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"

Hello from Riverside Health.

--_000_DSN_boundary_--
""".replace("\n", "\r\n").encode()


def arf_report(*, recipient: str, message_id: str, feedback_type: str = "abuse") -> bytes:
    """RFC 5965 section B.1's example abuse report, about one of our messages."""
    return f"""From: <abusedesk@mailbox-provider.example>
Date: Thu, 26 Nov 2026 17:40:36 -0500
Subject: FW: News for you
To: <abuse@riverside-health.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
     boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on Thu, 26 Nov 2026 14:00:00 EDT.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <bounces@riverside-health.example>
Original-Rcpt-To: <{recipient}>
Arrival-Date: Thu, 26 Nov 2026 14:00:00 EDT
Reporting-MTA: dns; mail.mailbox-provider.example
Source-IP: 192.0.2.1

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

From: Riverside Health <news@riverside-health.example>
To: {recipient}
Subject: News for you
MIME-Version: 1.0
Content-type: text/plain
Message-ID: {message_id}
Date: Thu, 26 Nov 2026 12:31:03 -0500

Hello from Riverside Health.
--part1_13d.2e68ed54_boundary--
""".replace("\n", "\r\n").encode()
