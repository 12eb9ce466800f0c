"""The purpose's tracking switch, where compliance officers edit purposes: off by default, said so on the form,
and each change audited on its own."""
import pytest
from django.urls import reverse

from audit.models import AuditEvent
from consent.models import Purpose
from consent.tests.factories import purpose_make

pytestmark = pytest.mark.django_db

FIELDS = {"code": "cpap", "name": "CPAP supplies", "description": "New masks and supplies.", "kind": "marketing"}


def test_a_new_purpose_does_not_track_and_the_form_says_what_tracking_records(verified_client):
    verified_client.sign_in(role="compliance officer")

    page = verified_client.get(reverse("consent:purpose_create")).content.decode()
    verified_client.post(reverse("consent:purpose_create"), FIELDS)

    assert 'name="tracking_enabled"' in page and "checked" not in page.split('name="tracking_enabled"')[1][:40]
    assert "Off by default" in page and "the first time a patient opens the message" in page
    assert Purpose.objects.get(code="cpap").tracking_enabled is False
    assert not AuditEvent.objects.filter(action="purpose.tracking_changed").exists()


def test_compliance_officer_turns_tracking_on_and_off_and_each_change_is_audited(verified_client):
    officer = verified_client.sign_in(role="compliance officer")
    purpose = purpose_make(**FIELDS)
    url = reverse("consent:purpose_edit", args=[purpose.pk])

    on = verified_client.post(url, FIELDS | {"tracking_enabled": "on"})
    purpose.refresh_from_db()
    tracked = purpose.tracking_enabled
    detail = verified_client.get(reverse("consent:purpose_detail", args=[purpose.pk])).content.decode()
    verified_client.post(url, FIELDS | {"tracking_enabled": "on", "name": "CPAP supplies and masks"})
    verified_client.post(url, FIELDS)
    purpose.refresh_from_db()

    assert on.status_code == 302 and tracked is True
    assert "Opens and clicks are counted" in detail
    assert purpose.tracking_enabled is False
    events = list(AuditEvent.objects.filter(action="purpose.tracking_changed").order_by("id"))
    assert [event.details for event in events] == [{"tracking_enabled": True}, {"tracking_enabled": False}]
    assert {event.actor for event in events} == {officer}


def test_creating_a_purpose_with_tracking_on_is_audited(verified_client):
    verified_client.sign_in(role="administrator")

    verified_client.post(reverse("consent:purpose_create"), FIELDS | {"tracking_enabled": "on"})

    purpose = Purpose.objects.get(code="cpap")
    assert purpose.tracking_enabled is True
    assert AuditEvent.objects.get(action="purpose.tracking_changed").object_id == str(purpose.pk)


def test_r_min_necessary_a_marketer_cannot_turn_tracking_on(verified_client):
    verified_client.sign_in(role="marketer")
    purpose = purpose_make(**FIELDS)

    response = verified_client.post(reverse("consent:purpose_edit", args=[purpose.pk]), FIELDS | {"tracking_enabled": "on"})

    purpose.refresh_from_db()
    assert response.status_code == 404 and purpose.tracking_enabled is False
