"""Renewal invitations (issue 4, item 9): only for authorizations that ran out by their date, never after the
patient's own revocation, never for the covered, once per expiry (R-REVOKE-ANYTIME, R-AUTH-DEFECTIVE)."""
from datetime import timedelta

import pytest
from django.core import mail

from audit.models import AuditEvent
from consent.models import Invitation
from consent.periodic import authorization_renewals_invite_task
from consent.services.authorizations import authorization_defect_record, authorization_revoke
from consent.services.renewals import authorization_renewals_invite
from consent.tests.factories import authorization_make, form_published_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


def _expired(patient, purpose, days_ago=3):
    return authorization_make(
        patient=patient, purpose=purpose, signed_ago=timedelta(days=400), expires_in=-timedelta(days=days_ago)
    )


def test_a_patient_whose_authorization_ran_out_is_invited_once(django_capture_on_commit_callbacks):
    purpose = purpose_make()
    form_published_make(purpose)
    patient = patient_make(email="renew@example.org")
    _expired(patient, purpose)

    with django_capture_on_commit_callbacks(execute=True):
        first = authorization_renewals_invite()
        second = authorization_renewals_invite()

    assert (first, second) == (1, 0)
    assert Invitation.objects.get().channel == Invitation.Channel.RENEWAL
    assert [m.to for m in mail.outbox] == [["renew@example.org"]]
    assert AuditEvent.objects.filter(action="invitation.created").count() == 1


def test_r_revoke_anytime_no_renewal_invitation_after_a_revocation():
    """A revocation is the patient's no: an authorization revoked before it ran out is not renewed."""
    purpose = purpose_make()
    form_published_make(purpose)
    patient = patient_make()
    _expired(patient, purpose)
    authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="portal")

    assert authorization_renewals_invite() == 0
    assert Invitation.objects.count() == 0


def test_r_auth_defective_no_renewal_invitation_for_a_defective_authorization():
    purpose = purpose_make()
    form_published_make(purpose)
    authorization = _expired(patient_make(), purpose)
    authorization_defect_record(actor=None, authorization_id=authorization.pk, reason="defect_false_information")

    assert authorization_renewals_invite() == 0


def test_no_invitation_for_a_covered_patient_an_old_expiry_or_a_purpose_without_a_form():
    purpose, formless = purpose_make(), purpose_make()
    form_published_make(purpose)
    renewed, long_ago, no_form = patient_make(), patient_make(), patient_make()
    _expired(renewed, purpose)
    authorization_make(patient=renewed, purpose=purpose)  # signed again already
    _expired(long_ago, purpose, days_ago=90)
    _expired(no_form, formless)

    assert authorization_renewals_invite() == 0


def test_the_daily_task_invites(django_capture_on_commit_callbacks, settings):
    purpose = purpose_make()
    form_published_make(purpose)
    _expired(patient_make(), purpose)

    with django_capture_on_commit_callbacks(execute=True):
        authorization_renewals_invite_task()

    assert Invitation.objects.filter(channel="renewal").count() == 1
    assert "consent.tasks.authorization_renewals_invite_task" in {
        entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()
    }


def test_r_revoke_anytime_a_later_revocation_also_stops_renewal_of_an_older_authorization():
    purpose = purpose_make()
    form_published_make(purpose)
    patient = patient_make()
    _expired(patient, purpose, days_ago=5)
    authorization_make(patient=patient, purpose=purpose, signed_ago=timedelta(days=4), expires_in=-timedelta(days=1))
    authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="portal")

    assert authorization_renewals_invite() == 0
