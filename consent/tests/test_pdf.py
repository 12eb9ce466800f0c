"""The signed authorization's PDF copy is a tagged PDF/UA-1 with its metadata (issue 16 item 6): a screen reader
reads its headings and paragraphs in order, and the file says what it is, who made it and in which language."""
import pytest

from conftest import pdf_text
from consent.documents import form_text
from consent.models import Authorization
from consent.tests.pdf_checks import pdf_accessibility
from consent.tests.services.test_signing import invited, prove_email, sign_data  # noqa: F401 (invited: a fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_throttle_and_media")]


def test_r_auth_copy_the_signed_pdf_is_tagged_pdf_ua_with_title_author_subject_and_language(client, invited):  # noqa: F811
    """R-AUTH-COPY, R-NO-PHI-LEAK: the copy the patient gets is PDF/UA-1 (structure tree, MarkInfo, language,
    the title shown by viewers) titled with the form's title, by the organisation, its subject naming the text's
    fingerprint; the patient's name is in the signed text, never in the metadata; the text still reads back."""
    patient, purpose, form_version, _, token = invited
    prove_email(client, token)
    client.post(f"/my/sign/{purpose.pk}/", sign_data(form_version), REMOTE_ADDR="203.0.113.9")
    authorization = Authorization.objects.get(patient=patient, purpose=purpose)
    with authorization.pdf.open("rb") as handle:
        content = handle.read()

    found = pdf_accessibility(content)

    assert found.pdfua_part == "1"
    assert found.marked and found.lang == "en" and found.display_doc_title
    assert {"Document", "H1", "H2", "P"} <= found.structure_types
    assert found.title == form_text(form_version).split("\n\n", 1)[0].strip() == form_version.title
    assert found.author == "Riverside Health"
    assert authorization.text_hash in found.subject
    for metadata in (found.title, found.author, found.subject):
        assert "Margaret" not in metadata and "Jones" not in metadata
    assert "Signed electronically by: Margaret Ellen Jones" in " ".join(pdf_text(content).split())
