"""Results through the API: a delivery's status by its id, and a campaign's aggregate results with the small-cell
rules of the marketer's screen (R-SMALL-CELL): a key never receives an exact count of 1 to 10, nor a total that
gives one away."""
import pytest

from api.scopes import RESULTS_READ
from campaigns.models import Delivery

pytestmark = pytest.mark.django_db


def test_r_small_cell_campaign_results_withhold_counts_of_one_to_ten(api_client, api_data):
    campaign = api_data["campaign"]
    Delivery.objects.filter(campaign=campaign).update(status=Delivery.Status.BLOCKED, block_reason="revoked")
    response = api_client([RESULTS_READ]).get(f"/api/v1/campaigns/{campaign.pk}/results")
    assert response.status_code == 200
    counts = {row["key"]: row for row in response.json()["counts"]}
    assert counts["audience"]["exact"] is None and counts["audience"]["text"] == "fewer than 11"
    assert counts["blocked_revoked"] == {
        "key": "blocked_revoked", "label": "Blocked: authorization revoked", "text": "fewer than 11",
        "exact": None, "low": 1, "high": 10,
    }
    assert all(row["exact"] is None or row["exact"] == 0 or row["exact"] > 10 for row in counts.values())


def test_campaign_results_are_exact_when_no_cell_is_small(api_client, api_data):
    from consent.tests.factories import patient_make

    campaign = api_data["campaign"]
    Delivery.objects.bulk_create(Delivery(campaign=campaign, patient=patient_make()) for _ in range(12))
    counts = {row["key"]: row for row in api_client([RESULTS_READ]).get(f"/api/v1/campaigns/{campaign.pk}/results").json()["counts"]}
    assert counts["audience"]["exact"] == 15 and counts["queued"]["exact"] == 15


def test_a_delivery_status_by_id_and_a_missing_one_is_a_404_problem(api_client, api_data):
    api = api_client([RESULTS_READ])
    delivery = Delivery.objects.filter(campaign=api_data["campaign"]).first()
    body = api.get(f"/api/v1/deliveries/{delivery.pk}").json()
    assert body["id"] == delivery.pk and body["status"] == "queued" and body["patient_id"] == delivery.patient_id
    assert "email" not in body and "full_name" not in body
    missing = api.get("/api/v1/deliveries/999999999")
    assert missing.status_code == 404 and missing["Content-Type"] == "application/problem+json"


def test_campaigns_page_with_a_cursor(api_client, api_data):
    from campaigns.tests.factories import campaign_make

    for _ in range(3):
        campaign_make(purpose=api_data["purpose"])
    api = api_client([RESULTS_READ])
    first = api.get("/api/v1/campaigns", limit=2).json()
    second = api.get("/api/v1/campaigns", limit=2, cursor=first["next_cursor"]).json()
    ids = [item["id"] for item in first["items"] + second["items"]]
    assert len(ids) == 4 and ids == sorted(ids, reverse=True) and second["next_cursor"] is None
    forged = api.get("/api/v1/campaigns", cursor="12")
    assert forged.status_code == 400 and forged.json()["code"] == "bad_cursor"


def test_the_api_answers_in_english_whatever_the_client_asks(api_client, api_data):
    """ADR 0030: the labels and problem details are the API's documented words, not the caller's language (the staff
    pages show the same labels in Spanish)."""
    campaign = api_data["campaign"]
    Delivery.objects.filter(campaign=campaign).update(status=Delivery.Status.BLOCKED, block_reason="revoked")
    client = api_client([RESULTS_READ])
    response = client.get(f"/api/v1/campaigns/{campaign.pk}/results", HTTP_ACCEPT_LANGUAGE="es")
    assert response.status_code == 200
    counts = {row["key"]: row for row in response.json()["counts"]}
    assert counts["blocked_revoked"]["label"] == "Blocked: authorization revoked"
    assert counts["audience"]["text"] == "fewer than 11"
    missing = client.get("/api/v1/campaigns/999999999/results", HTTP_ACCEPT_LANGUAGE="es")
    assert missing.status_code == 404 and missing.json()["detail"] == "No campaign has this id."
