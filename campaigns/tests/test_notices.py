"""Notices of the review loop (campaigns.notices, issue 17): who gets what on submit, approve, reject and sent, never
a notice of one's own action, written with the change and mailed after its commit as a subject / text / HTML
triplet that names no patient (R-NO-PHI-LEAK)."""
import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.core.exceptions import PermissionDenied

from accounts.tests.factories import staff_make
from campaigns import notices
from campaigns.models import Campaign, Notice
from campaigns.services.lifecycle import campaign_approve, campaign_reject, campaign_submit
from campaigns.tests.factories import campaign_make
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    return {
        "author": staff_make(role="marketer", email="mara@riverside-health.example"),
        "other_marketer": staff_make(role="marketer"),
        "officer": staff_make(role="compliance officer", email="olga@riverside-health.example"),
        "admin": staff_make(role="administrator", email="ada@riverside-health.example"),
    }


@pytest.fixture
def purpose():
    return purpose_make(name="CPAP supplies")


def _received(kind: str) -> list[str]:
    return sorted(Notice.objects.filter(kind=kind).values_list("recipient__email", flat=True))


def test_submit_tells_every_reviewer_and_nobody_else(people, purpose, django_capture_on_commit_callbacks):
    campaign = campaign_make(purpose=purpose, author=people["author"], name="Spring masks")

    with django_capture_on_commit_callbacks(execute=True):
        campaign_submit(actor=people["author"], campaign_id=campaign.pk)

    assert _received("submitted") == ["ada@riverside-health.example", "olga@riverside-health.example"]
    assert sorted(message.to[0] for message in mail.outbox) == _received("submitted")
    assert {message.subject for message in mail.outbox} == {"Waiting for your review: Spring masks"}


def test_an_inactive_reviewer_gets_nothing(people, purpose):
    people["officer"].is_active = False
    people["officer"].save(update_fields=["is_active"])
    campaign = campaign_make(purpose=purpose, author=people["author"])

    campaign_submit(actor=people["author"], campaign_id=campaign.pk)

    assert _received("submitted") == ["ada@riverside-health.example"]


def test_nobody_gets_a_notice_of_their_own_action(people, purpose, django_capture_on_commit_callbacks):
    """An administrator who submits their own campaign is not asked to review it; the officer who approves it is
    not told it was approved."""
    campaign = campaign_make(purpose=purpose, author=people["admin"])

    with django_capture_on_commit_callbacks(execute=True):
        campaign_submit(actor=people["admin"], campaign_id=campaign.pk)
        campaign_approve(actor=people["officer"], campaign_id=campaign.pk)

    assert list(Notice.objects.values_list("kind", "recipient__email").order_by("id")) == [
        ("submitted", "olga@riverside-health.example"),
        ("approved", "ada@riverside-health.example"),
    ]
    assert [message.to for message in mail.outbox] == [
        ["olga@riverside-health.example"], ["ada@riverside-health.example"]
    ]


def test_approve_tells_the_author(people, purpose, django_capture_on_commit_callbacks):
    campaign = campaign_make(purpose=purpose, author=people["author"], name="Spring masks")
    campaign_submit(actor=people["author"], campaign_id=campaign.pk)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        campaign_approve(actor=people["officer"], campaign_id=campaign.pk)

    notice = Notice.objects.get(kind="approved")
    assert (notice.recipient, notice.actor, notice.campaign_id, notice.read_at) == (
        people["author"], people["officer"], campaign.pk, None
    )
    assert [(message.to, message.subject) for message in mail.outbox] == [
        (["mara@riverside-health.example"], "Approved: Spring masks")
    ]
    assert f"/campaigns/{campaign.pk}/" in mail.outbox[0].body
    assert mail.outbox[0].extra_headers["Auto-Submitted"] == "auto-generated"  # RFC 3834: no auto-reply to it
    assert [content_type for _, content_type in mail.outbox[0].alternatives] == ["text/html"]


def test_with_notice_mail_off_the_notice_stays_in_the_product(people, purpose, settings, django_capture_on_commit_callbacks):
    settings.HIPAAMAIL_NOTICE_EMAIL = False
    campaign = campaign_make(purpose=purpose, author=people["author"], name="Spring masks")
    campaign_submit(actor=people["author"], campaign_id=campaign.pk)

    with django_capture_on_commit_callbacks(execute=True):
        campaign_approve(actor=people["officer"], campaign_id=campaign.pk)

    assert Notice.objects.filter(kind="approved", recipient=people["author"]).count() == 1
    assert mail.outbox == []


def test_reject_tells_the_author_with_the_reviewers_comment(people, purpose, django_capture_on_commit_callbacks):
    campaign = campaign_make(purpose=purpose, author=people["author"], name="Spring masks")
    campaign_submit(actor=people["author"], campaign_id=campaign.pk)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        campaign_reject(actor=people["officer"], campaign_id=campaign.pk, comment="The subject line over-promises.")

    notice = Notice.objects.get(kind="rejected")
    assert (notice.recipient, notice.comment) == (people["author"], "The subject line over-promises.")
    (message,) = mail.outbox
    html = message.alternatives[0][0]
    assert message.subject == "Sent back with a comment: Spring masks"
    assert "The subject line over-promises." in message.body and "The subject line over-promises." in html
    assert "olga@riverside-health.example" in message.body


def test_a_refused_approval_tells_nobody(people, purpose):
    campaign = campaign_make(purpose=purpose, author=people["admin"])
    campaign_submit(actor=people["admin"], campaign_id=campaign.pk)

    with pytest.raises(PermissionDenied):
        campaign_approve(actor=people["admin"], campaign_id=campaign.pk)

    assert not Notice.objects.filter(kind="approved").exists()


def test_sent_tells_the_author(people, purpose, django_capture_on_commit_callbacks):
    """campaigns.sending.dispatch.campaign_finish_if_done calls this in the transaction that marks it sent."""
    campaign = campaign_make(purpose=purpose, author=people["author"], name="Spring masks")

    with django_capture_on_commit_callbacks(execute=True):
        notices.campaign_sent_notify(campaign=campaign)

    assert _received("sent") == ["mara@riverside-health.example"]
    assert [message.subject for message in mail.outbox] == ["Finished sending: Spring masks"]


def test_a_journeys_step_campaign_gets_no_notice(people, purpose):
    campaign = campaign_make(purpose=purpose, author=people["author"])
    Campaign.objects.filter(pk=campaign.pk).update(kind=Campaign.Kind.JOURNEY_STEP)
    campaign.refresh_from_db()

    assert notices.campaign_sent_notify(campaign=campaign) == []
    assert notices.campaign_approved_notify(campaign=campaign, actor=people["officer"]) == []


def test_no_mail_leaves_before_the_commit(people, purpose, django_capture_on_commit_callbacks):
    campaign = campaign_make(purpose=purpose, author=people["author"])

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        campaign_submit(actor=people["author"], campaign_id=campaign.pk)

    assert Notice.objects.filter(kind="submitted").count() == 2
    assert mail.outbox == [] and len(callbacks) == 1


def test_r_no_phi_leak_notice_mail_names_no_patient_and_no_count(people, purpose, django_capture_on_commit_callbacks):
    """R-NO-PHI-LEAK: the triplet names the campaign, who acted and the comment; never a patient, an address of
    one, or how many patients the campaign reaches."""
    patients = [
        patient_make(full_name="Margaret Olsen", email="margaret.olsen@example.org"),
        patient_make(full_name="Peter Quince", email="peter.quince@example.org"),
    ]
    for patient in patients:
        authorization_make(patient=patient, purpose=purpose)
    campaign = campaign_make(purpose=purpose, author=people["author"], name="Spring masks")

    with django_capture_on_commit_callbacks(execute=True):
        campaign_submit(actor=people["author"], campaign_id=campaign.pk)
        campaign_reject(actor=people["officer"], campaign_id=campaign.pk, comment="Shorter, please.")
        campaign_submit(actor=people["author"], campaign_id=campaign.pk)
        campaign_approve(actor=people["officer"], campaign_id=campaign.pk)
        notices.campaign_sent_notify(campaign=Campaign.objects.get(pk=campaign.pk))

    # Submitted (two reviewers), rejected (the author), submitted again (two), approved and sent (the author).
    assert len(mail.outbox) == 7
    for message in mail.outbox:
        parts = [message.subject, message.body, message.alternatives[0][0]]
        for part in parts:
            for patient in patients:
                assert patient.full_name not in part and patient.email not in part
            assert "Olsen" not in part and "Quince" not in part
            assert " 2 " not in part and "patients in the audience" not in part
        assert message.alternatives[0][1] == "text/html"


def test_reviewer_list_is_compliance_officers_administrators_and_superusers(people):
    root = staff_make(role="")
    root.is_superuser = True
    root.save(update_fields=["is_superuser"])
    Group.objects.get_or_create(name="marketer")

    assert {user.pk for user in notices.reviewer_list()} == {people["officer"].pk, people["admin"].pk, root.pk}
    assert {user.pk for user in notices.reviewer_list(exclude_user_id=root.pk)} == {
        people["officer"].pk, people["admin"].pk
    }


def test_finishing_a_campaign_tells_its_author(people, purpose, django_capture_on_commit_callbacks):
    from unittest import mock

    from campaigns.sending.dispatch import campaign_finish_if_done, delivery_dispatch_batch
    from campaigns.services.launch import campaign_launch

    authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_make(purpose=purpose, author=people["author"], name="Spring masks")
    campaign_submit(actor=people["author"], campaign_id=campaign.pk)
    campaign_approve(actor=people["officer"], campaign_id=campaign.pk)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=people["officer"], campaign_id=campaign.pk)
    delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=10)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert campaign_finish_if_done(campaign_id=campaign.pk) is True

    assert _received("sent") == ["mara@riverside-health.example"]
    assert [message.subject for message in mail.outbox] == ["Finished sending: Spring masks"]


def test_each_reviewer_reads_the_notice_in_their_own_language(people, purpose, django_capture_on_commit_callbacks):
    """ADR 0030: the officer chose Spanish, the administrator never chose; the author's own language does not matter."""
    from django.utils import translation

    from accounts.language import staff_language_set

    staff_language_set(user_id=people["officer"].pk, language="es")
    campaign = campaign_make(purpose=purpose, author=people["author"], name="Spring masks")

    with translation.override("en"), django_capture_on_commit_callbacks(execute=True):
        campaign_submit(actor=people["author"], campaign_id=campaign.pk)

    by_address = {message.to[0]: message for message in mail.outbox}
    spanish = by_address["olga@riverside-health.example"]
    english = by_address["ada@riverside-health.example"]
    assert english.subject == "Waiting for your review: Spring masks"
    assert spanish.subject != english.subject and "Spring masks" in spanish.subject
    assert "revis" in spanish.subject.lower() and 'lang="es"' in spanish.alternatives[0][0]


def test_notice_mail_goes_to_a_worker_on_the_transactional_queue(people, purpose, settings, monkeypatch,
                                                                  django_capture_on_commit_callbacks):
    """Outside the test suite the mail is a task on the "transactional" queue: the reviewer's click does not wait for
    the mail server."""
    from celery import current_app

    settings.HIPAAMAIL_TRANSACTIONAL_MAIL_EAGER = False
    queued = []
    monkeypatch.setattr(current_app, "send_task", lambda name, args: queued.append((name, args)))
    campaign = campaign_make(purpose=purpose, author=people["author"], name="Spring masks")

    with django_capture_on_commit_callbacks(execute=True):
        campaign_submit(actor=people["author"], campaign_id=campaign.pk)

    assert mail.outbox == []
    ((name, (notice_ids,)),) = queued
    assert name == "campaigns.tasks.notice_mail_send_task"
    assert settings.CELERY_TASK_ROUTES[name] == {"queue": "transactional"}
    assert sorted(notice_ids) == sorted(Notice.objects.filter(kind="submitted").values_list("pk", flat=True))
    from campaigns.tasks import notice_mail_send_task

    notice_mail_send_task(notice_ids)
    assert sorted(message.to[0] for message in mail.outbox) == _received("submitted")


@pytest.mark.parametrize(
    "fields",
    [
        {"about": "journey", "subject": "CPAP welcome · v1", "link": ""},  # a journey notice without its link
        {"about": "journey", "subject": "", "link": "/journeys/1/"},  # ... or without the name it shows
        {"about": "journey", "subject": "CPAP welcome · v1", "link": "https://elsewhere.example/"},  # not a path
        {"about": "campaign"},  # a campaign notice without its campaign
    ],
    ids=["journey-without-link", "journey-without-subject", "journey-link-not-a-path", "campaign-without-campaign"],
)
def test_the_database_refuses_a_notice_without_what_it_is_about(people, fields):
    """campaigns may not import journeys (import-linter), so a journey notice holds the name it shows and the path
    it opens instead of a foreign key; the database refuses one that lacks either."""
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Notice.objects.create(recipient=people["author"], kind=Notice.Kind.APPROVED, **fields)

    assert not Notice.objects.exists()


def test_a_journey_notice_with_its_subject_and_link_is_accepted(people):
    notice = Notice.objects.create(
        recipient=people["author"], kind=Notice.Kind.APPROVED, about=Notice.About.JOURNEY,
        subject="CPAP welcome · v1", link="/journeys/1/",
    )

    assert (notice.campaign, notice.name) == (None, "CPAP welcome · v1")
