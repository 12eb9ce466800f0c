"""A journey's review writes the notices a campaign's does (issue 17, item 2; campaigns.notices): submitted to every
reviewer but the author, approved and rejected (with the comment) to the version's author; never one of one's own
action; in the product (the notices page, the count in the navigation) and by email in the recipient's language,
naming the journey version and who acted, never a patient."""
import re

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import translation

from accounts.language import staff_language_set
from accounts.tests.factories import staff_make
from campaigns.models import Notice
from consent.tests.factories import authorization_make, patient_make
from journeys.services.journeys import journey_approve, journey_reject, journey_submit, journey_version_save
from journeys.tests.factories import (
    FOLLOW_UP,
    event_trigger,
    journey_draft_make,
    journey_live_make,
    journey_purpose_make,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    return {
        "author": staff_make(role="marketer", email="mara@riverside-health.example", with_totp=True),
        "other_marketer": staff_make(role="marketer", email="mo@riverside-health.example"),
        "officer": staff_make(role="compliance officer", email="olga@riverside-health.example", with_totp=True),
        "admin": staff_make(role="administrator", email="ada@riverside-health.example"),
    }


@pytest.fixture
def purpose():
    return journey_purpose_make(name="CPAP supplies")


def _journey(purpose, people, name="CPAP welcome"):
    return journey_draft_make(purpose=purpose, author=people["author"], name=name)


def _received(kind: str) -> list[str]:
    return sorted(Notice.objects.filter(kind=kind).values_list("recipient__email", flat=True))


def test_submit_tells_every_reviewer_and_not_the_author(people, purpose, django_capture_on_commit_callbacks):
    journey = _journey(purpose, people)

    with django_capture_on_commit_callbacks(execute=True):
        journey_submit(actor=people["author"], journey_id=journey.pk)

    assert _received("submitted") == ["ada@riverside-health.example", "olga@riverside-health.example"]
    notice = Notice.objects.filter(kind="submitted").first()
    assert (notice.about, notice.campaign_id, notice.subject, notice.link, notice.actor) == (
        "journey", None, "CPAP welcome · v1", f"/journeys/{journey.pk}/review/", people["author"]
    )
    assert sorted(message.to[0] for message in mail.outbox) == _received("submitted")
    assert {message.subject for message in mail.outbox} == {"Journey waiting for your review: CPAP welcome · v1"}
    body = mail.outbox[0].body
    assert 'mara@riverside-health.example submitted the journey "CPAP welcome · v1" for approval.' in body
    assert f"/journeys/{journey.pk}/review/" in body and "the campaign" not in body


def test_an_administrator_who_submits_is_not_asked_to_review_their_own_journey(people, purpose):
    journey = journey_draft_make(purpose=purpose, author=people["admin"], name="CPAP welcome")

    journey_submit(actor=people["admin"], journey_id=journey.pk)

    assert _received("submitted") == ["olga@riverside-health.example"]


def test_a_refused_submit_tells_nobody(people, purpose):
    journey = _journey(purpose, people)
    journey_submit(actor=people["author"], journey_id=journey.pk)
    Notice.objects.all().delete()

    with pytest.raises(ValidationError):  # nothing left to submit: the version waits already
        journey_submit(actor=people["author"], journey_id=journey.pk)

    assert not Notice.objects.exists()


def test_approve_tells_the_versions_author_only(people, purpose, django_capture_on_commit_callbacks):
    journey = _journey(purpose, people)
    journey_submit(actor=people["author"], journey_id=journey.pk)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        journey_approve(actor=people["officer"], journey_id=journey.pk)

    (notice,) = Notice.objects.filter(kind="approved")
    assert (notice.recipient, notice.actor, notice.about, notice.subject, notice.link, notice.read_at) == (
        people["author"], people["officer"], "journey", "CPAP welcome · v1", f"/journeys/{journey.pk}/", None
    )
    (message,) = mail.outbox
    assert (message.to, message.subject) == (["mara@riverside-health.example"], "Journey approved: CPAP welcome · v1")
    assert 'olga@riverside-health.example approved your journey "CPAP welcome · v1".' in message.body
    assert f"/journeys/{journey.pk}/" in message.body
    assert "Open the journey" in message.alternatives[0][0]
    assert message.extra_headers["Auto-Submitted"] == "auto-generated"


def test_a_new_versions_notices_name_that_version_and_go_to_its_author(people, purpose):
    """An edit of an approved journey is a new version, here by another marketer: that version's author is told,
    not the journey's creator."""
    journey = journey_live_make(purpose=purpose, author=people["author"], approver=people["officer"],
                                name="CPAP welcome")
    journey_version_save(actor=people["other_marketer"], journey_id=journey.pk, name="CPAP welcome",
                         trigger=event_trigger(), steps=list(FOLLOW_UP))
    journey_submit(actor=people["other_marketer"], journey_id=journey.pk)
    Notice.objects.all().delete()

    journey_approve(actor=people["admin"], journey_id=journey.pk)

    assert list(Notice.objects.values_list("kind", "recipient__email", "subject")) == [
        ("approved", "mo@riverside-health.example", "CPAP welcome · v2")
    ]


def test_a_refused_approval_tells_nobody(people, purpose):
    journey = journey_draft_make(purpose=purpose, author=people["admin"], name="CPAP welcome")
    journey_submit(actor=people["admin"], journey_id=journey.pk)

    with pytest.raises(PermissionDenied):
        journey_approve(actor=people["admin"], journey_id=journey.pk)

    assert not Notice.objects.filter(kind="approved").exists()


def test_reject_tells_the_author_with_the_reviewers_comment(people, purpose, django_capture_on_commit_callbacks):
    journey = _journey(purpose, people)
    journey_submit(actor=people["author"], journey_id=journey.pk)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        journey_reject(actor=people["officer"], journey_id=journey.pk, comment="Wait a week before the tips.")

    (notice,) = Notice.objects.filter(kind="rejected")
    assert (notice.recipient, notice.actor, notice.comment, notice.link) == (
        people["author"], people["officer"], "Wait a week before the tips.", f"/journeys/{journey.pk}/"
    )
    (message,) = mail.outbox
    html = message.alternatives[0][0]
    assert message.subject == "Journey sent back with a comment: CPAP welcome · v1"
    assert "Wait a week before the tips." in message.body and "Wait a week before the tips." in html
    assert 'olga@riverside-health.example sent your journey "CPAP welcome · v1" back to you' in message.body


def test_the_mail_is_in_each_recipients_language(people, purpose, django_capture_on_commit_callbacks):
    """ADR 0030: the officer chose Spanish, the administrator never chose; the author's language does not matter."""
    staff_language_set(user_id=people["officer"].pk, language="es")
    journey = _journey(purpose, people)

    with translation.override("en"), django_capture_on_commit_callbacks(execute=True):
        journey_submit(actor=people["author"], journey_id=journey.pk)

    by_address = {message.to[0]: message for message in mail.outbox}
    spanish, english = by_address["olga@riverside-health.example"], by_address["ada@riverside-health.example"]
    assert english.subject == "Journey waiting for your review: CPAP welcome · v1"
    assert spanish.subject == "Recorrido pendiente de su revisión: CPAP welcome · v1"
    assert "envió a revisión el recorrido" in spanish.body and "Revíselo:" in spanish.body
    assert 'lang="es"' in spanish.alternatives[0][0] and "Revisarlo" in spanish.alternatives[0][0]


def test_the_authors_rejection_mail_in_spanish(people, purpose, django_capture_on_commit_callbacks):
    staff_language_set(user_id=people["author"].pk, language="es")
    journey = _journey(purpose, people)
    journey_submit(actor=people["author"], journey_id=journey.pk)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        journey_reject(actor=people["officer"], journey_id=journey.pk, comment="Más corto, por favor.")

    (message,) = mail.outbox
    assert message.subject == "Recorrido devuelto con un comentario: CPAP welcome · v1"
    assert "le devolvió su recorrido" in message.body and "Más corto, por favor." in message.body


def test_r_no_phi_leak_journey_notice_mail_names_no_patient(people, purpose, django_capture_on_commit_callbacks):
    patients = [
        patient_make(full_name="Margaret Olsen", email="margaret.olsen@example.org"),
        patient_make(full_name="Peter Quince", email="peter.quince@example.org"),
    ]
    for patient in patients:
        authorization_make(patient=patient, purpose=purpose)
    journey = _journey(purpose, people)

    with django_capture_on_commit_callbacks(execute=True):
        journey_submit(actor=people["author"], journey_id=journey.pk)
        journey_reject(actor=people["officer"], journey_id=journey.pk, comment="Shorter, please.")
        journey_submit(actor=people["author"], journey_id=journey.pk)
        journey_approve(actor=people["officer"], journey_id=journey.pk)

    assert len(mail.outbox) == 6  # submitted (two), rejected, submitted again (two), approved
    for message in mail.outbox:
        for part in [message.subject, message.body, message.alternatives[0][0]]:
            for patient in patients:
                assert patient.full_name not in part and patient.email not in part


# --- In the product ---------------------------------------------------------------------------------------------


def test_the_reviewer_sees_the_journey_in_notices_its_count_and_its_link_opens_the_review(
    verified_client, people, purpose
):
    journey = _journey(purpose, people)
    journey_submit(actor=people["author"], journey_id=journey.pk)
    verified_client.sign_in(user=people["officer"])
    notice = Notice.objects.get(recipient=people["officer"])

    home = verified_client.get("/").content.decode()
    page = verified_client.get("/campaigns/notices/").content.decode()
    opened = verified_client.get(f"/campaigns/notices/{notice.pk}/")

    assert re.search(r'data-nav="notices">Notices <span class="nav-count" data-count>'
                     r'<span class="visually-hidden">unread: </span>1</span>', home)
    assert "mara@riverside-health.example submitted the journey “CPAP welcome · v1” for approval." in page
    assert f'href="/campaigns/notices/{notice.pk}/"' in page and "data-unread" in page
    assert opened.status_code == 302 and opened["Location"] == f"/journeys/{journey.pk}/review/"
    notice.refresh_from_db()
    assert notice.read_at is not None
    assert 'data-nav="notices">Notices</a>' in verified_client.get("/").content.decode()


def test_the_author_sees_the_approval_and_its_link_opens_the_journey(verified_client, people, purpose):
    journey = journey_live_make(purpose=purpose, author=people["author"], approver=people["officer"],
                                name="CPAP welcome")
    verified_client.sign_in(user=people["author"])
    notice = Notice.objects.get(recipient=people["author"])

    page = verified_client.get("/campaigns/notices/").content.decode()
    opened = verified_client.get(f"/campaigns/notices/{notice.pk}/")

    assert "olga@riverside-health.example approved the journey “CPAP welcome · v1”." in page
    assert "Open the journey" in page
    assert opened.status_code == 302 and opened["Location"] == f"/journeys/{journey.pk}/"
    assert verified_client.get(opened["Location"]).status_code == 200


def test_the_notices_page_in_spanish_names_the_journey(verified_client, people, purpose):
    journey = _journey(purpose, people)
    journey_submit(actor=people["author"], journey_id=journey.pk)
    journey_reject(actor=people["officer"], journey_id=journey.pk, comment="Shorter, please.")
    staff_language_set(user_id=people["author"].pk, language="es")
    verified_client.sign_in(user=people["author"])

    page = verified_client.get("/campaigns/notices/", HTTP_ACCEPT_LANGUAGE="es").content.decode()

    assert "olga@riverside-health.example devolvió el recorrido “CPAP welcome · v1” con un comentario:" in page
    assert "Abrir el recorrido" in page and "Shorter, please." in page


def test_another_staff_members_journey_notice_is_a_404(verified_client, people, purpose):
    journey = _journey(purpose, people)
    journey_submit(actor=people["author"], journey_id=journey.pk)
    theirs = Notice.objects.get(recipient=people["officer"])
    verified_client.sign_in(user=people["other_marketer"])

    assert verified_client.get(f"/campaigns/notices/{theirs.pk}/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.read_at is None
