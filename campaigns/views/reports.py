"""The Reports page (/reports/): compliance officers and administrators download the campaign evidence report,
a patient's consent ledger and the compliance summary for a period, as PDF or CSV. Everyone else gets the same
404 as a page that does not exist (R-MIN-NECESSARY). Each export asks for the second factor again (R-SEC-MFA)
and is audited before any data is read (R-SEC-AUDIT). No identifier travels in a URL: the forms are POSTs and
name ids only (R-NO-PHI-LEAK). Thin: the reports are in campaigns.reports."""
from django.conf import settings
from django.http import Http404
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST, require_safe

from accounts import reentry
from accounts.roles import sees_patient_evidence
from audit import actions
from campaigns.forms.reports import CampaignEvidenceForm, ComplianceSummaryForm, PatientLedgerForm
from campaigns.reports import campaign_evidence, compliance_summary, exports, patient_ledger
from campaigns.reports.exports import ReportKind

_PREFIX = {
    ReportKind.CAMPAIGN_EVIDENCE: "evidence",
    ReportKind.PATIENT_LEDGER: "ledger",
    ReportKind.COMPLIANCE_SUMMARY: "summary",
}


def _access_reports(user) -> None:
    if not sees_patient_evidence(user):
        raise Http404


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _page(request, *, bound=None, status: int = 200):
    """The Reports page; `bound` is the form just submitted, shown again with its errors."""
    campaign_id = _int_or_none(request.GET.get("campaign"))
    patient_id = _int_or_none(request.GET.get("patient"))
    forms = {
        ReportKind.CAMPAIGN_EVIDENCE: CampaignEvidenceForm(
            prefix=_PREFIX[ReportKind.CAMPAIGN_EVIDENCE], initial={"campaign": campaign_id} if campaign_id else None
        ),
        ReportKind.PATIENT_LEDGER: PatientLedgerForm(
            prefix=_PREFIX[ReportKind.PATIENT_LEDGER], initial={"patient": patient_id} if patient_id else None
        ),
        ReportKind.COMPLIANCE_SUMMARY: ComplianceSummaryForm(
            prefix=_PREFIX[ReportKind.COMPLIANCE_SUMMARY], initial=ComplianceSummaryForm.initial_period()
        ),
    }
    if bound is not None:
        forms[bound[0]] = bound[1]
    context = {
        "evidence_form": forms[ReportKind.CAMPAIGN_EVIDENCE],
        "ledger_form": forms[ReportKind.PATIENT_LEDGER],
        "summary_form": forms[ReportKind.COMPLIANCE_SUMMARY],
        "submitted": bound[0] if bound is not None else None,
        "time_zone": settings.TIME_ZONE,
        "stepup_grace_until": reentry.stepup_grace_until(request.session, request.user),
        "stepup_grace_minutes": reentry.stepup_grace_seconds() // 60,
    }
    return render(request, "reports/index.html", context, status=status)


@require_safe
def report_index(request):
    _access_reports(request.user)
    return _page(request)


def _confirmed(request, form, *, kind: str, object_type: str, object_id: object) -> bool:
    """The second factor again before an export (R-SEC-MFA): a code, a passkey step-up, or the session's short
    grace after one (accounts.reentry: six exports in a row need one code); every export's step-up is audited
    with how it passed, a refusal naming the report's object, and marked on the form with its reason."""
    passed = reentry.second_factor_reentry(
        user=request.user,
        session=request.session,
        code=form.cleaned_data["code"],
        passkey_stepup=form.cleaned_data["passkey_stepup"],
        object_type=object_type,
        object_id=object_id,
        details={"for": actions.STEP_UP_EXPORT, "report": kind},
    )
    if not passed:
        form.add_error("code", passed.refusal)
    return bool(passed)


def _valid(request, form) -> bool:
    return reentry.form_valid_within_grace(form, session=request.session, user=request.user)


@require_POST
def campaign_evidence_export(request):
    _access_reports(request.user)
    kind = ReportKind.CAMPAIGN_EVIDENCE
    form = CampaignEvidenceForm(request.POST, prefix=_PREFIX[kind])
    if _valid(request, form):
        campaign = form.cleaned_data["campaign"]
        if _confirmed(request, form, kind=kind, object_type="campaign", object_id=campaign.pk):
            meta = exports.report_export_start(
                actor=request.user,
                kind=kind,
                format=form.cleaned_data["format"],
                object_type="campaign",
                object_id=campaign.pk,
                filters=[(_("Campaign"), f"#{campaign.pk} · {campaign.name}")],
            )
            if meta.format == exports.CSV:
                return campaign_evidence.campaign_evidence_csv(meta, campaign_id=campaign.pk)
            return campaign_evidence.campaign_evidence_pdf(meta, campaign_id=campaign.pk)
    return _page(request, bound=(kind, form), status=400)


@require_POST
def patient_ledger_export(request):
    _access_reports(request.user)
    kind = ReportKind.PATIENT_LEDGER
    form = PatientLedgerForm(request.POST, prefix=_PREFIX[kind])
    if _valid(request, form):
        patient_id = form.cleaned_data["patient"]
        if _confirmed(request, form, kind=kind, object_type="patient", object_id=patient_id):
            meta = exports.report_export_start(
                actor=request.user,
                kind=kind,
                format=form.cleaned_data["format"],
                object_type="patient",
                object_id=patient_id,
                patient_id=patient_id,
                filters=[(_("Patient"), f"#{patient_id}")],
            )
            if meta.format == exports.CSV:
                return patient_ledger.patient_ledger_csv(meta, patient_id=patient_id)
            return patient_ledger.patient_ledger_pdf(meta, patient_id=patient_id)
    return _page(request, bound=(kind, form), status=400)


@require_POST
def compliance_summary_export(request):
    _access_reports(request.user)
    kind = ReportKind.COMPLIANCE_SUMMARY
    form = ComplianceSummaryForm(request.POST, prefix=_PREFIX[kind])
    if _valid(request, form):
        period = compliance_summary.Period.of_days(form.cleaned_data["date_from"], form.cleaned_data["date_to"])
        if _confirmed(request, form, kind=kind, object_type="report", object_id=""):
            meta = exports.report_export_start(
                actor=request.user,
                kind=kind,
                format=form.cleaned_data["format"],
                object_type="report",
                object_id="",
                filters=period.filters(),
                details={"from": period.first_day.isoformat(), "to": period.last_day.isoformat()},
            )
            if meta.format == exports.CSV:
                return compliance_summary.compliance_summary_csv(meta, period=period)
            return compliance_summary.compliance_summary_pdf(meta, period=period)
    return _page(request, bound=(kind, form), status=400)
