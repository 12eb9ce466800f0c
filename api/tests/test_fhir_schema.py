"""The integration API's FHIR answers (one Consent, and a patient's searchset Bundle; R4 and R5) against the
official FHIR JSON schemas from HL7's npm packages (consent/tests/fhir_schemas.py), beside fhir.resources' check
in test_authorizations.py (issue 16 item 6)."""
import json

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from api.scopes import AUTHORIZATIONS_READ, AUTHORIZATIONS_WRITE
from api.tests.test_authorizations import _body, media, world  # noqa: F401 (media, world: fixtures)
from consent.models import Authorization, Purpose
from consent.tests import fhir_schemas
from consent.tests.factories import authorization_make, purpose_make

pytestmark = pytest.mark.django_db

PDF_COPY = b"%PDF-1.7\n% a signed copy\n%%EOF\n"


def _errors(resource: dict, version: str) -> dict[str, list[str]]:
    try:
        packages = fhir_schemas.SCHEMAS[version]
        return {package.spec: fhir_schemas.schema_errors(resource, package=package) for package in packages}
    except fhir_schemas.SchemaUnavailable as error:
        pytest.fail(f"The official FHIR schemas are needed for this test: {error}", pytrace=False)


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_r_purpose_kind_api_fhir_consents_and_bundles_pass_the_official_schemas(api_client, world, version):  # noqa: F811
    """R-PURPOSE-KIND: a marketing authorization recorded through the API and a treatment consent with its PDF
    copy, exported one by one and as the patient's Bundle, are valid FHIR by HL7's own schemas."""
    patient, purpose, form = world
    recorded = api_client([AUTHORIZATIONS_WRITE]).post("/api/v1/authorizations", _body(patient, purpose, form)).json()
    refills = purpose_make(code="cpap-refills", name="CPAP refill reminders", kind=Purpose.Kind.TREATMENT)
    treatment = authorization_make(patient=patient, purpose=refills)
    # The one update the append-only trigger allows: attaching the PDF copy once.
    Authorization.objects.filter(pk=treatment.pk).update(
        pdf=default_storage.save("authorizations/copy.pdf", ContentFile(PDF_COPY))
    )
    reader = api_client([AUTHORIZATIONS_READ])
    expected = {package.spec: [] for package in fhir_schemas.SCHEMAS[version.lower()]}

    consents = [
        json.loads(reader.get(f"/api/v1/authorizations/{pk}/fhir", version=version).content)
        for pk in (recorded["id"], treatment.pk)
    ]
    bundle = json.loads(reader.get("/api/v1/authorizations/fhir", patient_id=patient.pk, version=version).content)

    attachment = consents[1]["sourceAttachment"] if version == "R4" else consents[1]["sourceAttachment"][0]
    assert attachment["size"] == (len(PDF_COPY) if version == "R4" else str(len(PDF_COPY)))  # R5: integer64, a string
    for resource in [*consents, bundle]:
        assert _errors(resource, version.lower()) == expected, resource["resourceType"]
    assert [entry["resource"]["id"] for entry in bundle["entry"]] == [
        f"authorization-{treatment.pk}", f"authorization-{recorded['id']}"
    ]
