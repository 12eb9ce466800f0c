"""Every compliance report's PDF is a tagged PDF/UA-1 with its metadata (issue 16 item 6): title (the report and
what it covers, by id), author (the organisation), subject and language, with a structure tree that carries the
headings and the tables, so a screen reader reads the evidence in order."""
import pytest

from audit.models import AuditEvent
from campaigns.tests.test_reports import _export, _officer, _today_period, world  # noqa: F401 (world: a fixture)
from consent.tests.pdf_checks import pdf_accessibility

pytestmark = pytest.mark.django_db


def _reports(facts):
    today = _today_period()
    return {
        "campaign-evidence": (
            {"campaign": facts["campaign"].pk},
            f"Campaign evidence report, campaign #{facts['campaign'].pk}",
        ),
        "patient-ledger": (
            {"patient": facts["patients"]["covered"].pk},
            f"Patient consent ledger, patient #{facts['patients']['covered'].pk}",
        ),
        "compliance-summary": (today, f"Compliance summary, {today['date_from']} to {today['date_to']}"),
    }


@pytest.mark.parametrize("report", ["campaign-evidence", "patient-ledger", "compliance-summary"])
def test_r_no_phi_leak_every_report_pdf_is_tagged_pdf_ua_with_metadata_that_names_ids_only(
    verified_client, world, report  # noqa: F811 (world: the fixture of test_reports)
):
    """R-NO-PHI-LEAK, R-SEC-AUDIT: PDF/UA-1 (structure tree with headings and table cells, MarkInfo, language,
    the title shown by viewers); title and subject name the report by id and its export audit event; the patient's
    name and record number are in the report, never in its metadata."""
    officer = _officer(verified_client)
    fields, title = _reports(world)[report]

    response = _export(verified_client, officer, report, fmt="pdf", **fields)

    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    found = pdf_accessibility(response.content)
    event = AuditEvent.objects.filter(action="report.exported").latest("id")
    assert found.pdfua_part == "1"
    assert found.marked and found.lang == "en" and found.display_doc_title
    assert {"Document", "H1", "H2", "P", "Table", "TH", "TD"} <= found.structure_types
    assert found.title == title
    assert found.author == "Riverside Health"
    assert found.subject.startswith(f"{title.split(',')[0]} (") and f"export audit event #{event.pk}." in found.subject
    for metadata in (found.title, found.subject):
        assert "Margaret" not in metadata and "MRN-1001" not in metadata and officer.email not in metadata
