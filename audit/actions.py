"""The audit trail's vocabulary: every action the product writes and every kind of actor that is not a user.

`audit.services.audit_record` refuses an action that is not in ACTIONS, so a new kind of event starts here. The
strings are stored in every event and hashed into the chain: never change one; add a new constant instead
(R-SEC-AUDIT). audit imports no app, so every app can name its actions from here.
"""
import re

# --- Who acted, when no user did (AuditEvent.actor_role; a user's role is their group names) ---------------

SYSTEM = "system"
PATIENT = "patient"
ANONYMOUS = "anonymous"
INTEGRATION = "integration"  # an EHR or CRM feed reporting an event (an authorization's expiry event)
# An integration API key acting (audit.context binds it for the request): the actor role is "api_key:<id>".
API_KEY_PREFIX = "api_key:"
SUPERUSER = "superuser"  # a superuser in no group
USER = "user"  # a signed-in user in no group

ACTOR_KINDS = frozenset({SYSTEM, PATIENT, ANONYMOUS, INTEGRATION, SUPERUSER, USER})

# --- Actions ------------------------------------------------------------------------------------------------

# Staff accounts: sign-in and sign-out, password resets, and changes made in the admin (field names only).
ACCOUNT_SIGNED_IN = "account.signed_in"
ACCOUNT_SIGNED_OUT = "account.signed_out"
ACCOUNT_SIGN_IN_FAILED = "account.sign_in_failed"
ACCOUNT_PASSWORD_RESET = "account.password_reset"
ACCOUNT_ADMIN_ADDED = "account.admin_added"
ACCOUNT_ADMIN_CHANGED = "account.admin_changed"
ACCOUNT_ADMIN_DELETED = "account.admin_deleted"
# The admin's own verbs (log_addition, log_change, log_deletions) to the action each is audited as.
ACCOUNT_ADMIN_ACTIONS = {
    "added": ACCOUNT_ADMIN_ADDED,
    "changed": ACCOUNT_ADMIN_CHANGED,
    "deleted": ACCOUNT_ADMIN_DELETED,
}

# The second factor: enrolment, verification at sign-in, recovery codes, and the re-entry before a risky step.
MFA_DEVICE_ENROLLED = "mfa.device_enrolled"
MFA_ENROLLMENT_FAILED = "mfa.enrollment_failed"
MFA_DEVICE_REMOVED = "mfa.device_removed"
MFA_RECOVERY_CODES_ISSUED = "mfa.recovery_codes_issued"
MFA_VERIFIED = "mfa.verified"
MFA_VERIFICATION_FAILED = "mfa.verification_failed"
MFA_REENTRY_FAILED = "mfa.reentry_failed"

# The trail itself: who read it, and the sealer's statements about the chain.
AUDIT_LOG_VIEWED = "audit.log_viewed"
AUDIT_PATIENT_HISTORY_VIEWED = "audit.patient_history_viewed"
AUDIT_CHECKPOINTED = "audit.checkpointed"
AUDIT_ARCHIVE_FLOOR_SIGNED = "audit.archive_floor_signed"
AUDIT_VERIFIED = "audit.verified"
AUDIT_BREAK_ALERTED = "audit.break_alerted"

# Patients: records created, looked up and opened by staff, and the portal's emailed sign-in codes.
PATIENT_CREATED = "patient.created"
PATIENT_UPDATED = "patient.updated"
PATIENTS_UPSERTED = "patient.batch_upserted"
PATIENT_SEARCHED = "patient.searched"
PATIENT_VIEWED = "patient.viewed"
PATIENT_DOCUMENT_DOWNLOADED = "patient.document_downloaded"
PATIENT_CODE_SENT = "patient.code_sent"
PATIENT_CODE_THROTTLED = "patient.code_throttled"
PATIENT_CODE_LOCKED = "patient.code_locked"
PATIENT_EMAIL_PROVEN = "patient.email_proven"

# Patient imports (a CSV file) and FHIR Consent imports.
PATIENT_IMPORT_PREVIEWED = "patient_import.previewed"
PATIENT_IMPORT_STARTED = "patient_import.started"
PATIENT_IMPORT_FINISHED = "patient_import.finished"
PATIENT_IMPORT_FAILED = "patient_import.failed"
FHIR_IMPORTED = "fhir.imported"

# Care events reported by an EHR, CRM or practice-management system (consent.events).
PATIENT_EVENT_RECORDED = "patient_event.recorded"
# A CSV file of care events (consent.services.event_import): checked (a dry run, or refused for its errors), or
# imported whole in one transaction.
PATIENT_EVENT_IMPORT_CHECKED = "patient_event.import_checked"
PATIENT_EVENTS_IMPORTED = "patient_event.imported"

# The integration API: keys, each call made with one, and outgoing webhooks.
API_KEY_CREATED = "api_key.created"
API_KEY_REVOKED = "api_key.revoked"
API_CALLED = "api.called"
WEBHOOK_SUBSCRIPTION_CREATED = "webhook.subscription_created"
WEBHOOK_SUBSCRIPTION_DELETED = "webhook.subscription_deleted"
WEBHOOK_DELIVERY_FAILED = "webhook.delivery_failed"
WEBHOOK_DELIVERY_RETRIED = "webhook.delivery_retried"

# Authorizations: signed, revoked, ended by their event, found defective, and their copies.
AUTHORIZATION_GRANTED = "authorization.granted"
AUTHORIZATION_REVOKED = "authorization.revoked"
AUTHORIZATION_EXPIRY_EVENT_RECORDED = "authorization.expiry_event_recorded"
AUTHORIZATION_DEFECT_RECORDED = "authorization.defect_recorded"
AUTHORIZATION_PDF_EMAILED = "authorization.pdf_emailed"
AUTHORIZATION_PDF_EMAIL_FAILED = "authorization.pdf_email_failed"
AUTHORIZATION_PDF_DOWNLOADED = "authorization.pdf_downloaded"
AUTHORIZATION_FHIR_EXPORTED = "authorization.fhir_exported"

# Invitations to sign an authorization.
INVITATION_CREATED = "invitation.created"

# Purposes and their authorization form versions.
PURPOSE_CREATED = "purpose.created"
PURPOSE_UPDATED = "purpose.updated"
PURPOSE_TRACKING_CHANGED = "purpose.tracking_changed"
AUTHORIZATION_FORM_CREATED = "authorization_form.created"
AUTHORIZATION_FORM_UPDATED = "authorization_form.updated"
AUTHORIZATION_FORM_PUBLISHED = "authorization_form.published"

# Suppressions (a hard bounce, a complaint) and what the patient-facing unsubscribe page saw.
SUPPRESSION_RECORDED = "suppression.recorded"
UNSUBSCRIBE_VIEWED = "unsubscribe.viewed"
UNSUBSCRIBE_BAD_TOKEN = "unsubscribe.bad_token"  # one per request, until issue 16: kept for the rows written then
# Links that are not ours, as one count per interval (campaigns.services.unsubscribe): details count,
# interval_start, interval_seconds.
UNSUBSCRIBE_BAD_TOKENS = "unsubscribe.bad_tokens"

# The content library: email templates and content blocks.
EMAIL_TEMPLATE_CREATED = "email_template.created"
EMAIL_TEMPLATE_UPDATED = "email_template.updated"
EMAIL_TEMPLATE_APPROVED = "email_template.approved"
EMAIL_TEMPLATE_RETIRED = "email_template.retired"
CONTENT_BLOCK_CREATED = "content_block.created"
CONTENT_BLOCK_UPDATED = "content_block.updated"
CONTENT_BLOCK_APPROVED = "content_block.approved"
CONTENT_BLOCK_RETIRED = "content_block.retired"
# A library item's kind (its object_type) and verb to the action it is audited as.
LIBRARY_ITEM_ACTIONS = {
    "email_template": {
        "created": EMAIL_TEMPLATE_CREATED,
        "updated": EMAIL_TEMPLATE_UPDATED,
        "approved": EMAIL_TEMPLATE_APPROVED,
        "retired": EMAIL_TEMPLATE_RETIRED,
    },
    "content_block": {
        "created": CONTENT_BLOCK_CREATED,
        "updated": CONTENT_BLOCK_UPDATED,
        "approved": CONTENT_BLOCK_APPROVED,
        "retired": CONTENT_BLOCK_RETIRED,
    },
}

# Segments.
SEGMENT_SAVED = "segment.saved"

# Campaigns: editing, the review and its refusals, the lifecycle, test sends, and who read their evidence.
CAMPAIGN_CREATED = "campaign.created"
CAMPAIGN_UPDATED = "campaign.updated"
CAMPAIGN_SEGMENT_SET = "campaign.segment_set"
CAMPAIGN_SUBMITTED = "campaign.submitted"
CAMPAIGN_SUBMIT_REFUSED = "campaign.submit_refused"
CAMPAIGN_APPROVED = "campaign.approved"
CAMPAIGN_APPROVE_REFUSED = "campaign.approve_refused"
CAMPAIGN_APPROVAL_VOIDED = "campaign.approval_voided"
CAMPAIGN_REJECTED = "campaign.rejected"
CAMPAIGN_SCHEDULED = "campaign.scheduled"
CAMPAIGN_LAUNCHED = "campaign.launched"
CAMPAIGN_LAUNCH_REFUSED = "campaign.launch_refused"
CAMPAIGN_PAUSED = "campaign.paused"
CAMPAIGN_RESUMED = "campaign.resumed"
CAMPAIGN_CANCELLED = "campaign.cancelled"
CAMPAIGN_SENT = "campaign.sent"
CAMPAIGN_TEST_SENT = "campaign.test_sent"
CAMPAIGN_TEST_SEND_FAILED = "campaign.test_send_failed"
CAMPAIGN_EVIDENCE_VIEWED = "campaign.evidence_viewed"
CAMPAIGN_RESULTS_DOWNLOADED = "campaign.results_downloaded"

# Deliveries: one event per sending transaction (its deliveries by outcome), bounces and complaints.
DELIVERY_BATCH_DISPATCHED = "delivery.batch_dispatched"
DELIVERY_BOUNCED = "delivery.bounced"
DELIVERY_COMPLAINED = "delivery.complained"

# Journeys (journeys/): versions and their review, pause, resume and stop; enrolments (one event per intake or
# trigger pass, listing enrolment ids), each scanner pass's steps by outcome, and exits.
JOURNEY_CREATED = "journey.created"
JOURNEY_VERSION_CREATED = "journey.version_created"
JOURNEY_VERSION_UPDATED = "journey.version_updated"
JOURNEY_SUBMITTED = "journey.submitted"
JOURNEY_SUBMIT_REFUSED = "journey.submit_refused"
JOURNEY_APPROVED = "journey.approved"
JOURNEY_APPROVE_REFUSED = "journey.approve_refused"
JOURNEY_REJECTED = "journey.rejected"
JOURNEY_PAUSED = "journey.paused"
JOURNEY_RESUMED = "journey.resumed"
JOURNEY_STOPPED = "journey.stopped"
JOURNEY_ENROLLED = "journey.enrolled"
JOURNEY_STEPS_RUN = "journey.steps_run"
JOURNEY_ENROLMENTS_EXITED = "journey.enrolments_exited"
JOURNEY_RESULTS_VIEWED = "journey.results_viewed"

# Compliance reports and operations on the stored data.
REPORT_EXPORTED = "report.exported"
ENCRYPTION_ROTATED = "encryption.rotated"
STANDING_REBUILT = "standing.rebuilt"  # the live counts' summary written again from the evidence (ADR 0021)

# --- issue 17: drafts ------------------------------------------------------------------------------------------
# A campaign copied as a new draft (details: the source campaign's id), a draft deleted (its purpose's code), a
# submission withdrawn by its author or an administrator (submitted -> draft), and a refused delete or withdrawal
# (details: the action, and why: "status" or "not_author").
CAMPAIGN_DUPLICATED = "campaign.duplicated"
CAMPAIGN_DRAFT_DELETED = "campaign.draft_deleted"
CAMPAIGN_WITHDRAWN = "campaign.withdrawn"
CAMPAIGN_DRAFT_ACTION_REFUSED = "campaign.draft_action_refused"

# issue 17: patient. A form version translated (ADR 0026); a patient's language set (in the portal, or by staff); a
# one-click unsubscribe undone by the patient within minutes (ADR 0027): its authorizations stored again.
AUTHORIZATION_FORM_TRANSLATION_CREATED = "authorization_form.translation_created"
PATIENT_LANGUAGE_SET = "patient.language_set"
UNSUBSCRIBE_UNDONE = "unsubscribe.undone"

# --- issue 17: review loop ----------------------------------------------------------------------------------
# A step-up re-entry that passed (accounts.reentry), with the "for" code below and "by": "code", "passkey",
# "grace" (a step passed within the short grace after a code, a passkey or the sign-in, same session, same user).
MFA_REENTRY_PASSED = "mfa.reentry_passed"

# The shape every action has: "<subject>.<what happened>", lower case words joined by underscores.
ACTION_PATTERN = re.compile(r"^[a-z_]+\.[a-z_]+$")

# Every action: each string constant above that is not an actor kind (the step-up codes below come after this).
ACTIONS = frozenset(
    value
    for name, value in list(globals().items())
    if name.isupper() and isinstance(value, str) and value not in ACTOR_KINDS and name not in ("ACTION_PATTERN", "API_KEY_PREFIX")
)

# --- What a step-up re-entry was for ------------------------------------------------------------------------
# Not actions: the "for" code in the details of mfa.reentry_failed, naming the step the second factor guarded.
STEP_UP_APPROVE = "campaign.approve"
STEP_UP_LAUNCH = "campaign.launch"
STEP_UP_SCHEDULE = "campaign.schedule"
STEP_UP_CANCEL = "campaign.cancel"
STEP_UP_EXPORT = REPORT_EXPORTED
STEP_UP_JOURNEY_APPROVE = "journey.approve"
STEP_UP_PURPOSES = frozenset(
    {STEP_UP_APPROVE, STEP_UP_LAUNCH, STEP_UP_SCHEDULE, STEP_UP_CANCEL, STEP_UP_EXPORT, STEP_UP_JOURNEY_APPROVE}
)

