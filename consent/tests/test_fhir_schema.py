"""Our FHIR Consent exports against the official FHIR JSON schemas (HL7's packages on the npm registry, fetched once
and checked by SHA-512: consent/tests/fhir_schemas.py), beside fhir.resources' check in test_fhir.py: R4 and R5,
with and without the signed PDF, for a marketing and a treatment-kind purpose (issue 16 item 6)."""
import base64

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from consent import fhir
from consent.models import Authorization, Purpose
from consent.tests import fhir_schemas
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.7\n% signed authorization\n" + bytes(range(256)) + b"\n%%EOF\n"


@pytest.fixture(scope="session")
def schemas():
    """Every schema, loaded once per run; a registry that cannot be reached fails the test, never skips it."""
    try:
        return {
            version: [(package, fhir_schemas.schema_load(package)) for package in packages]
            for version, packages in fhir_schemas.SCHEMAS.items()
        }
    except fhir_schemas.SchemaUnavailable as error:
        pytest.fail(f"The official FHIR schemas are needed for this test: {error}", pytrace=False)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def _authorization(kind: str, with_pdf: bool) -> Authorization:
    purpose = purpose_make(code=f"{kind}-messages", name=f"{kind.title()} messages", kind=kind)
    authorization = authorization_make(
        patient=patient_make(external_id="MRN-5521"), purpose=purpose, text_hash="cd" * 32, document_text="text"
    )
    if with_pdf:
        # The one update the append-only trigger allows: attaching the PDF copy once.
        name = default_storage.save("authorizations/copy.pdf", ContentFile(PDF))
        Authorization.objects.filter(pk=authorization.pk).update(pdf=name)
    return Authorization.objects.get(pk=authorization.pk)


def _errors(resource, packages) -> dict[str, list[str]]:
    return {package.spec: fhir_schemas.schema_errors(resource, package=package) for package, _ in packages}


@pytest.mark.parametrize("version", fhir.VERSIONS)
@pytest.mark.parametrize("with_pdf", [True, False], ids=["pdf", "no-pdf"])
@pytest.mark.parametrize("kind", [Purpose.Kind.MARKETING, Purpose.Kind.TREATMENT])
def test_r_purpose_kind_exports_are_valid_against_the_official_fhir_schemas(schemas, version, with_pdf, kind):
    """R-PURPOSE-KIND: each export passes every official schema of its version, and names the purpose of use and
    the policy of its purpose's kind: a treatment-kind consent is no 164.508 marketing authorization."""
    authorization = _authorization(kind, with_pdf)

    resource = fhir.authorization_to_fhir(authorization, version=version)

    assert _errors(resource, schemas[version]) == {package.spec: [] for package, _ in schemas[version]}
    provision = resource["provision"] if version == "r4" else resource["provision"][0]
    expected = {
        Purpose.Kind.MARKETING: ("HMARKT", (fhir.CONSENT_POLICY_SYSTEM, "hipaa-auth"), fhir.HIPAA_164_508),
        Purpose.Kind.TREATMENT: ("TREAT", (fhir.ACT_CODE_SYSTEM, "HIPAAConsent"), fhir.HIPAA_164_506),
    }[kind]
    assert {(c["system"], c["code"]) for c in provision["purpose"]} == {
        (fhir.ACT_REASON_SYSTEM, expected[0]),
        (fhir.PURPOSE_SYSTEM, f"{kind}-messages"),
    }
    if version == "r4":
        rule = resource["policyRule"]["coding"]
        assert [(c["system"], c["code"]) for c in rule] == [expected[1]]
        assert resource["policy"] == [{"uri": expected[2]}]
    else:
        rule = resource["regulatoryBasis"][0]["coding"]
        assert [(c["system"], c["code"]) for c in rule] == [expected[1]]
        assert resource["policyBasis"] == {"url": expected[2]}
    if with_pdf:
        attachment = resource["sourceAttachment"] if version == "r4" else resource["sourceAttachment"][0]
        assert base64.b64decode(attachment["data"]) == PDF
        # unsignedInt in R4 (a JSON number); integer64 in R5, which its JSON writes as a string.
        assert attachment["size"] == (len(PDF) if version == "r4" else str(len(PDF)))


def test_the_schemas_reject_what_they_should_so_the_check_can_fail(schemas):
    """The validation is real: R5's schema refuses a numeric integer64 (the export's old bug), R4's a status
    outside its list, and both an element the resource does not have."""
    r5 = fhir.authorization_to_fhir(_authorization(Purpose.Kind.MARKETING, True), version="r5")
    r4 = fhir.authorization_to_fhir(Authorization.objects.get(), version="r4")
    r5["sourceAttachment"][0]["size"] = len(PDF)
    r4["status"] = "totally-active"
    r4["scopeOfWork"] = "x"

    (r5_core,) = schemas["r5"]
    r4_errors = _errors(r4, schemas["r4"])

    assert fhir_schemas.schema_errors(r5, package=r5_core[0]) == [
        f"sourceAttachment/0/size: {len(PDF)} is not of type 'string'"
    ]
    assert r4_errors[fhir_schemas.R4_SCHEMA.spec] == [
        "(root): Additional properties are not allowed ('scopeOfWork' was unexpected)",
        "status: 'totally-active' is not one of ['draft', 'proposed', 'active', 'rejected', 'inactive', "
        "'entered-in-error']",
    ]
    assert r4_errors[fhir_schemas.R4B_CORE.spec] == [
        "(root): Additional properties are not allowed ('scopeOfWork' was unexpected)"
    ]


def test_a_cached_package_that_does_not_match_its_integrity_is_fetched_again(schemas, tmp_path, monkeypatch):
    """The cache is only a copy: a truncated or altered tarball is never read, it is replaced by a fresh one."""
    package = fhir_schemas.R4_SCHEMA
    monkeypatch.setattr(fhir_schemas, "CACHE_DIR", tmp_path)
    package.path.write_bytes(b"not the package")

    data = fhir_schemas.package_tarball(package)

    assert fhir_schemas._integrity(data) == package.integrity
    assert package.path.read_bytes() == data
