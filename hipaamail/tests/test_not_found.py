"""One answer for "missing" and "not yours", decided in one place (issue 12): domain modules raise
audit.exceptions.NotFound and never import django.http.Http404; hipaamail.middleware.NotFoundMiddleware turns it into
Django's 404 (R-MIN-NECESSARY)."""
import ast
from pathlib import Path

import pytest

from campaigns.tests.factories import campaign_make
from consent.tests.factories import patient_make, purpose_make

ROOT = Path(__file__).resolve().parents[2]
APPS = ("accounts", "audit", "campaigns", "consent", "hipaamail")


def _is_http_layer(path: Path) -> bool:
    parts = path.relative_to(ROOT).parts
    return "views" in parts or path.name in ("views.py", "urls.py", "middleware.py")


def _domain_modules() -> list[Path]:
    return [
        path
        for app in APPS
        for path in sorted((ROOT / app).rglob("*.py"))
        if "tests" not in path.parts and "migrations" not in path.parts and not _is_http_layer(path)
    ]


def _names_http404(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and any(alias.name == "Http404" for alias in node.names):
            return True
        if isinstance(node, ast.Attribute) and node.attr == "Http404":
            return True
    return False


def test_r_min_necessary_no_domain_module_knows_http404():
    modules = _domain_modules()
    scanned = {str(path.relative_to(ROOT)) for path in modules}
    # The scan reaches the permission policies, which answer "not found or not yours" for every staff page.
    assert {"campaigns/permissions.py", "consent/permissions.py", "audit/permissions.py"} <= scanned
    assert len(modules) > 80

    assert [str(path.relative_to(ROOT)) for path in modules if _names_http404(path)] == []


@pytest.mark.django_db
def test_r_min_necessary_a_missing_and_a_forbidden_patient_record_give_the_same_404(verified_client):
    patient = patient_make()
    verified_client.sign_in(role="marketer")

    forbidden = verified_client.get(f"/consent/patients/{patient.pk}/")
    missing = verified_client.get(f"/consent/patients/{patient.pk + 1000}/")

    assert forbidden.status_code == missing.status_code == 404
    assert forbidden.content == missing.content


@pytest.mark.django_db
def test_r_min_necessary_a_missing_campaign_and_a_review_page_a_marketer_may_not_open_give_404(verified_client):
    campaign = campaign_make(purpose=purpose_make())
    verified_client.sign_in(role="marketer")

    assert verified_client.get(f"/campaigns/{campaign.pk + 1000}/").status_code == 404
    assert verified_client.get(f"/campaigns/{campaign.pk}/review/").status_code == 404
    assert verified_client.get(f"/campaigns/{campaign.pk}/").status_code == 200


@pytest.mark.django_db
def test_r_min_necessary_the_audit_trail_is_a_404_for_a_marketer_and_open_to_an_officer(verified_client):
    verified_client.sign_in(role="marketer")
    assert verified_client.get("/audit/").status_code == 404

    verified_client.sign_in(role="compliance officer")
    assert verified_client.get("/audit/").status_code == 200
