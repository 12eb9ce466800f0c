"""Media on S3-compatible storage (MEDIA_STORAGE=s3; docs/scaling.md, ADR 0019), against a local S3 server (moto's
ThreadedMotoServer, started here): a patient signs, the signed PDF lands in the bucket, private and encrypted at rest;
the compliance officer downloads it through the product's permission-checked view and gets the same bytes; a
written revocation's scan goes the same way. The storage options are the production settings' own (read from
hipaamail.settings.production in a process of its own), not a copy of them."""
import json

import boto3
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from moto.server import ThreadedMotoServer

from accounts.tests.factories import staff_make
from campaigns.tests.smtp_server import free_port
from consent.documents import form_text, text_hash
from consent.models import Authorization
from consent.selectors.form_versions import form_version_current
from consent.services.written import revocation_written_record
from consent.tests.factories import form_published_make, patient_make, purpose_make
from hipaamail.tests.test_scaling_settings import _settings_of
from hipaamail.tests.test_settings import PRODUCTION_ENV

pytestmark = pytest.mark.django_db

BUCKET = "riverside-media-test"
SCAN = b"%PDF-1.4\n% a scanned letter: please stop the CPAP news\n%%EOF\n"


@pytest.fixture
def s3(settings, tmp_path):
    """A local S3 server with an empty bucket, and the product's media storage pointed at it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server._port}"
    try:
        client = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="test-key", aws_secret_access_key="test-secret",
        )  # fmt: skip
        client.create_bucket(Bucket=BUCKET)
        result = _settings_of(
            PRODUCTION_ENV | {
                "MEDIA_STORAGE": "s3", "MEDIA_S3_BUCKET": BUCKET, "MEDIA_S3_ENDPOINT_URL": endpoint,
                "MEDIA_S3_REGION": "us-east-1", "MEDIA_S3_ACCESS_KEY_ID": "test-key",
                "MEDIA_S3_SECRET_ACCESS_KEY": "test-secret",
            },
            ["STORAGES"],
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        settings.STORAGES = {**settings.STORAGES, "default": json.loads(result.stdout)["STORAGES"]["default"]}
        settings.MEDIA_ROOT = tmp_path / "no-media-here"  # nothing may land on this host's disk
        yield client
    finally:
        server.stop()


def _objects(client) -> dict[str, bytes]:
    listing = client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {item["Key"]: client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read() for item in listing}


def test_r_sec_encrypt_rest_r_auth_copy_a_signed_pdf_lands_in_the_bucket_and_is_downloaded_through_the_product(
    s3, client, verified_client, settings, tmp_path
):
    patient = patient_make()
    purpose = purpose_make()
    form_version = form_published_make(purpose)
    assert form_version_current(purpose_id=purpose.pk) == form_version
    # The patient signs through the portal (emailed code, then the form).
    from django.core import mail

    client.post("/my/sign-in/", {"email": patient.email})
    code = mail.outbox[-1].body.split("Your code is: ")[1][:6]
    assert client.post("/my/code/", {"code": code}).status_code == 302
    response = client.post(
        f"/my/sign/{purpose.pk}/",
        {"text_hash": text_hash(form_text(form_version)), "signer": "patient", "signature_name": "Pat Doe", "intent": "on"},
    )
    assert response.status_code == 302
    authorization = Authorization.objects.get(patient=patient, purpose=purpose)

    # The PDF is in the bucket under the name the row records, encrypted by the bucket, readable by no one else.
    stored = _objects(s3)
    assert list(stored) == [authorization.pdf.name]
    pdf = stored[authorization.pdf.name]
    assert pdf[:5] == b"%PDF-"
    head = s3.head_object(Bucket=BUCKET, Key=authorization.pdf.name)
    assert head["ServerSideEncryption"] == "AES256"
    grants = s3.get_object_acl(Bucket=BUCKET, Key=authorization.pdf.name)["Grants"]
    assert [grant["Permission"] for grant in grants] == ["FULL_CONTROL"]  # the owner alone: no public read
    assert all("URI" not in grant["Grantee"] for grant in grants)
    assert not (tmp_path / "no-media-here").exists()
    # The copy emailed to the patient (R-AUTH-COPY) was read back from the bucket.
    copies = [m for m in mail.outbox if m.attachments]
    assert [attachment[1] for attachment in copies[-1].attachments] == [pdf]

    # The compliance officer downloads it through the permission-checked view: the same bytes.
    verified_client.sign_in(role="compliance officer")
    download = verified_client.get(f"/consent/patients/{patient.pk}/authorizations/{authorization.pk}/pdf/")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == pdf
    # And the patient through the portal.
    mine = client.get(f"/my/authorizations/{authorization.pk}/pdf/")
    assert b"".join(mine.streaming_content) == pdf


def test_r_revoke_written_a_revocation_scan_lands_in_the_bucket_and_is_downloaded_through_the_product(
    s3, verified_client
):
    from consent.tests.factories import authorization_make

    patient = patient_make()
    purpose = purpose_make()
    authorization = authorization_make(patient=patient, purpose=purpose)
    officer = staff_make(role="compliance officer", with_totp=True)

    revocation_written_record(
        actor=officer, authorization_id=authorization.pk,
        scan=SimpleUploadedFile("letter.pdf", SCAN, content_type="application/pdf"),
    )  # fmt: skip

    scan_name = Authorization.objects.get(pk=authorization.pk).revocation.scan.name
    assert _objects(s3)[scan_name] == SCAN
    assert s3.head_object(Bucket=BUCKET, Key=scan_name)["ServerSideEncryption"] == "AES256"
    verified_client.sign_in(user=officer)
    download = verified_client.get(
        f"/consent/patients/{patient.pk}/authorizations/{authorization.pk}/revocation-scan/"
    )
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == SCAN
