"""Formula injection in every CSV the product exports (issue 16, item 4; OWASP "CSV injection").

A cell that starts with =, +, -, @, a tab or a carriage return is run by a spreadsheet as a formula. Every export
writes through one writer (campaigns.reports.exports.SafeCsvWriter) that prefixes such text with a single quote,
whatever column it is in and whoever typed it: a campaign's or journey's name, a patient's record number, the
name typed as a signature, a browser's user agent, a staff member's email (an address may start with = + or -).

The exports are asked for through the real views, by a compliance officer after the second factor, with the
hostile values drawn by Hypothesis and written through the services: the campaign evidence report, the patient
consent ledger, the compliance summary and a campaign's results. R-NO-PHI-LEAK, R-SEND-EVIDENCE."""
import csv
import io
import re
import string
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from accounts.tests.factories import staff_make
from audit.tests.hostile import FORMULA_STARTS, HOSTILE, MARKER, rolled_back
from campaigns.models import Campaign
from campaigns.reports.exports import SafeCsvWriter
from campaigns.tests import test_reports as reports
from consent import documents
from consent.services.authorizations import authorization_grant
from consent.tests.factories import patient_make

pytestmark = pytest.mark.django_db

world = reports.world  # the campaign sent to five patients, with bounces, a revocation and a defect

_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def _formula(max_size: int = 40, starts=FORMULA_STARTS):
    """Text a spreadsheet would run: a formula start, then anything (the marker, to find it again)."""
    return st.builds(
        lambda start, rest: start + MARKER + rest,
        st.sampled_from(starts),
        st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=max_size),
    )


def _formula_email():
    """An address Django's validator accepts that starts a formula: = + or - opens the local part."""
    local = st.text(string.ascii_lowercase + string.digits + "=+-", min_size=1, max_size=10)
    return st.builds(lambda start, rest: f"{start}{MARKER}{rest}@riverside-health.example", st.sampled_from("=+-"), local)


def _runnable_cells(text: str) -> list[str]:
    """Cells of a CSV that a spreadsheet would run: text starting with a formula character (a negative number
    is a number, not a formula)."""
    return [
        cell
        for row in csv.reader(io.StringIO(text))
        for cell in row
        if cell[:1] in FORMULA_STARTS and not _NUMBER.fullmatch(cell)
    ]


@HOSTILE
@given(
    rows=st.lists(
        st.lists(
            st.one_of(
                _formula(),
                st.text(),
                st.integers(),
                st.floats(allow_nan=False, allow_infinity=False),
                st.none(),
                st.booleans(),
                st.datetimes(),
                st.decimals(allow_nan=False, allow_infinity=False),
            ),
            max_size=6,
        ),
        max_size=5,
    )
)
def test_the_writer_leaves_no_cell_a_spreadsheet_would_run(rows):
    """Whatever the values, no text cell of the file starts a formula; numbers stay numbers."""
    out = io.StringIO()
    writer = SafeCsvWriter(out, lineterminator="\r\n")
    writer.writerow(["header", "-" + MARKER])
    writer.writerows(rows)

    assert _runnable_cells(out.getvalue()) == []


def _export_csv(client, officer, report: str, **fields) -> str:
    response = reports._export(client, officer, report, fmt="csv", **fields)
    assert response.status_code == 200, response.status_code
    return reports._streamed_text(response)


def test_r_no_phi_leak_no_export_has_a_cell_a_spreadsheet_would_run(verified_client, world):
    """R-NO-PHI-LEAK, R-SEND-EVIDENCE: hostile names, record numbers, signatures, user agents and staff emails,
    through every CSV export: each reaches the file as quoted text, none as a formula."""
    officer = verified_client.sign_in(
        user=staff_make(role="compliance officer", with_totp=True, email=f"-{MARKER}@riverside-health.example")
    )
    campaign = world["campaign"]
    covered = world["patients"]["covered"]
    User = get_user_model()

    # Each example writes five exports through the views: a few examples keep the file under half a minute.
    @settings(HOSTILE, max_examples=5)
    @given(
        campaign_name=_formula(150),
        record_number=st.builds(
            lambda start, rest: start + MARKER + rest,
            st.sampled_from("=+-@"),
            st.text(string.ascii_letters + string.digits + '=+-@()"!,;:/', max_size=40),
        ),
        # The services trim what a person typed: a leading tab or carriage return would not be stored.
        signer=_formula(starts="=+-@"),
        authority=_formula(starts="=+-@"),
        user_agent=_formula(starts="=+-@"),
        author_email=_formula_email(),
    )
    def check(campaign_name, record_number, signer, authority, user_agent, author_email):
        with rolled_back():
            Campaign.objects.filter(pk=campaign.pk).update(name=campaign_name)
            User.objects.filter(pk=campaign.created_by_id).update(email=author_email)
            patient = patient_make(external_id=record_number)
            text = documents.form_text(world["form"])
            authorization_grant(
                actor=None, patient=patient, purpose=world["purpose"], form_version=world["form"],
                signed_at=timezone.now() - timedelta(days=1), expires_at=timezone.now() + timedelta(days=365),
                document_text=text, text_hash=documents.text_hash(text), signature_name=signer,
                signed_ip="203.0.113.9", user_agent=user_agent, signed_by_representative=True,
                representative_authority=authority,
            )
            verified_client.get(f"/consent/patients/{patient.pk}/")  # staff access, in the summary by email
            files = {
                "campaign evidence": _export_csv(verified_client, officer, "campaign-evidence", campaign=campaign.pk),
                "ledger of a patient sent the campaign": _export_csv(
                    verified_client, officer, "patient-ledger", patient=covered.pk
                ),
                "ledger of the hostile patient": _export_csv(
                    verified_client, officer, "patient-ledger", patient=patient.pk
                ),
                "compliance summary": _export_csv(
                    verified_client, officer, "compliance-summary", **reports._today_period()
                ),
            }
            results = verified_client.get(f"/campaigns/{campaign.pk}/results.csv")
            assert results.status_code == 200
            files["campaign results"] = results.content.decode()

            for name, text in files.items():
                assert _runnable_cells(text) == [], name
            # Not vacuous: each hostile value is in a file, as text behind its quote.
            everything = "\n".join(files.values())
            cells = {cell for row in csv.reader(io.StringIO(everything)) for cell in row}
            for value in (record_number, signer, authority, user_agent, author_email, officer.email):
                assert "'" + value in cells, value
            assert any(cell.startswith("'" + campaign_name[:20]) for cell in cells)

    check()


def test_a_staff_email_that_starts_a_formula_is_quoted_in_the_compliance_summary(verified_client, world):
    """A column no call site had marked as free text: the staff member's email, a summary row's measure (it was
    written as typed before the one writer)."""
    officer = verified_client.sign_in(
        user=staff_make(role="compliance officer", with_totp=True, email=f"={MARKER}@riverside-health.example")
    )
    verified_client.get(f"/consent/patients/{world['patients']['covered'].pk}/")
    today = timezone.localdate()
    text = _export_csv(
        verified_client, officer, "compliance-summary",
        date_from=(today - timedelta(days=1)).isoformat(), date_to=today.isoformat(),
    )

    assert _runnable_cells(text) == []
    assert f"'={MARKER}@riverside-health.example" in text
