"""The audit trail in words people read: one sentence per action, the kinds of event the log filters by, and the
phrases for who acted and on what (issue 17, item 4).

Every action of audit.actions has an entry in SENTENCES (audit/tests/test_sentences.py fails for one without). A
sentence is a format string over the phrases of one event (EventWords): {actor}, {object}, {patient}, {purpose},
{channel}, {version}; each phrase is plain text, escaped where it is written into HTML (audit.presentation). The
stored event keeps ids and codes only (R-NO-PHI-LEAK); names come from audit.naming when the page is drawn, only
for the objects the viewer may see, and a patient is always a number.
"""
from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _

from audit import actions as a
from audit import chain

# --- Why the chain broke (audit.chain's reasons), for the audit log and the alert ------------------------------
BREAK_MEANINGS = {
    chain.HASH_MISMATCH: _("the event's stored hash does not match its content: the event was changed after sealing"),
    chain.LINK_MISMATCH: _("the event does not follow the one before it: events were removed, reordered or swapped"),
    chain.MISSING: _("no event has this sequence number: an event was deleted"),
    chain.TRUNCATED: _("the chain ends before a signed checkpoint: the newest events were removed"),
    chain.CHECKPOINT_MISMATCH: _("the event at this sequence is not the one a signed checkpoint recorded"),
    chain.CHECKPOINT_FORGED: _("a checkpoint's signature does not verify with the configured keys"),
    chain.MALFORMED: _("the stored row does not have the shape of a sealed event"),
}


def break_meaning(reason: str) -> str:
    """What a break reason means, in the reader's language (the reason code itself when it is not known)."""
    meaning = BREAK_MEANINGS.get(reason)
    return str(meaning) if meaning is not None else reason


# --- Kinds of event, for the filter (and the label of each action in it) ---------------------------------------
# An action's kind is its subject (the part before the dot), grouped as a person would look for it.
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sign_in": (_("Sign-in and staff accounts"), ("account", "mfa")),
    "patients": (_("Patient records and sign-in codes"), ("patient", "patient_event")),
    "imports": (_("Imports"), ("patient_import", "fhir")),
    "consent": (_("Authorizations and invitations"), ("authorization", "invitation")),
    "purposes": (_("Purposes and authorization forms"), ("purpose", "authorization_form")),
    "unsubscribes": (_("Unsubscribes and suppressions"), ("unsubscribe", "suppression")),
    "content": (_("Content library"), ("email_template", "content_block")),
    "campaigns": (_("Campaigns and segments"), ("campaign", "segment")),
    "deliveries": (_("Messages sent, bounces and complaints"), ("delivery",)),
    "journeys": (_("Journeys"), ("journey",)),
    "integrations": (_("Integration API and webhooks"), ("api_key", "api", "webhook")),
    "trail": (_("The audit trail itself"), ("audit",)),
    "operations": (_("Reports and operations"), ("report", "encryption", "standing")),
}


def kind_of(action: str) -> str:
    subject = action.split(".", 1)[0]
    for kind, (_label, subjects) in KINDS.items():
        if subject in subjects:
            return kind
    return ""


def kind_actions(kind: str) -> list[str]:
    """Every action of a kind (all of the vocabulary, not only those that occurred)."""
    return sorted(action for action in a.ACTIONS if kind_of(action) == kind)


# --- One sentence per action -----------------------------------------------------------------------------------
# (label for the filter, sentence). The sentence's phrases: see EventWords.
SENTENCES: dict[str, tuple[str, str]] = {
    # Staff accounts
    a.ACCOUNT_SIGNED_IN: (_("Signed in"), _("{actor} signed in with a password")),
    a.ACCOUNT_SIGNED_OUT: (_("Signed out"), _("{actor} signed out")),
    a.ACCOUNT_SIGN_IN_FAILED: (_("Sign-in failed"), _("Someone tried to sign in with a wrong email address or password")),
    a.ACCOUNT_PASSWORD_RESET: (_("Password reset"), _("{actor} reset their password")),
    a.ACCOUNT_ADMIN_ADDED: (_("Added in the administration"), _("{actor} added {object} in the administration")),
    a.ACCOUNT_ADMIN_CHANGED: (_("Changed in the administration"), _("{actor} changed {object} in the administration")),
    a.ACCOUNT_ADMIN_DELETED: (_("Deleted in the administration"), _("{actor} deleted {object} in the administration")),
    # Second factor
    a.MFA_DEVICE_ENROLLED: (_("Second factor added"), _("{actor} added a second factor ({object})")),
    a.MFA_ENROLLMENT_FAILED: (_("Second factor set-up failed"), _("{actor} tried to add a second factor, but the code did not match")),
    a.MFA_DEVICE_REMOVED: (_("Second factor removed"), _("{actor} removed a second factor ({object})")),
    a.MFA_RECOVERY_CODES_ISSUED: (_("Recovery codes issued"), _("{actor} was given new recovery codes")),
    a.MFA_VERIFIED: (_("Second factor passed"), _("{actor} passed the second factor")),
    a.MFA_VERIFICATION_FAILED: (_("Second factor failed"), _("{actor} entered a second factor that did not work")),
    a.MFA_REENTRY_FAILED: (_("Confirmation code refused"), _("{actor} was refused a confirmation code before acting on {object}")),
    a.MFA_REENTRY_PASSED: (_("Second factor confirmed again"), _("{actor} confirmed the second factor again before acting on {object}")),
    # The trail itself
    a.AUDIT_LOG_VIEWED: (_("Audit log read for a patient"), _("{actor} read the audit log filtered by {patient}")),
    a.AUDIT_PATIENT_HISTORY_VIEWED: (_("Patient history read"), _("{actor} read the audit history of {patient}")),
    a.AUDIT_CHECKPOINTED: (_("Chain checkpoint signed"), _("{actor} signed a checkpoint of the audit chain")),
    a.AUDIT_ARCHIVE_FLOOR_SIGNED: (_("Archive floor signed"), _("{actor} signed where the archived part of the audit chain ends")),
    a.AUDIT_VERIFIED: (_("Chain verified"), _("{actor} verified the audit chain")),
    a.AUDIT_BREAK_ALERTED: (_("Chain break reported"), _("{actor} alerted the compliance officers that the audit chain is broken")),
    # Patients
    a.PATIENT_CREATED: (_("Patient record created"), _("{actor} created the record of {patient}")),
    a.PATIENT_UPDATED: (_("Patient record changed"), _("{actor} changed the record of {patient}")),
    a.PATIENT_LANGUAGE_SET: (_("Patient's language set"), _("{actor} set the language {patient} reads")),
    a.PATIENTS_UPSERTED: (_("Patient records written in a batch"), _("{actor} wrote a batch of patient records")),
    a.PATIENT_SEARCHED: (_("Patient looked up"), _("{actor} looked a patient up")),
    a.PATIENT_VIEWED: (_("Patient record opened"), _("{actor} opened the record of {patient}")),
    a.PATIENT_DOCUMENT_DOWNLOADED: (_("Patient document downloaded"), _("{actor} downloaded a signed document of {patient}")),
    a.PATIENT_CODE_SENT: (_("Portal sign-in code sent"), _("{patient} was sent a code to sign in to the portal")),
    a.PATIENT_CODE_THROTTLED: (_("Portal sign-in code held back"), _("{patient} asked for too many portal codes; no code was sent")),
    a.PATIENT_CODE_LOCKED: (_("Portal sign-in locked"), _("{patient} entered too many wrong portal codes; sign-in is locked for a while")),
    a.PATIENT_EMAIL_PROVEN: (_("Portal sign-in"), _("{patient} signed in to the portal with the emailed code")),
    # Imports
    a.PATIENT_IMPORT_PREVIEWED: (_("Patient import checked"), _("{actor} checked a patient file before importing it")),
    a.PATIENT_IMPORT_STARTED: (_("Patient import started"), _("{actor} started importing a patient file")),
    a.PATIENT_IMPORT_FINISHED: (_("Patient import finished"), _("{actor} finished importing a patient file")),
    a.PATIENT_IMPORT_FAILED: (_("Patient import failed"), _("A patient file could not be imported")),
    a.FHIR_IMPORTED: (_("FHIR consents imported"), _("{actor} imported FHIR consent records")),
    a.PATIENT_EVENT_RECORDED: (_("Care event recorded"), _("{actor} recorded a care event for {patient}")),
    a.PATIENT_EVENT_IMPORT_CHECKED: (_("Care events file checked"), _("{actor} checked a file of care events")),
    a.PATIENT_EVENTS_IMPORTED: (_("Care events imported"), _("{actor} imported a file of care events")),
    # Integration API
    a.API_KEY_CREATED: (_("API key created"), _("{actor} created {object}")),
    a.API_KEY_REVOKED: (_("API key revoked"), _("{actor} revoked {object}")),
    a.API_CALLED: (_("API called"), _("{object} called the integration API")),
    a.WEBHOOK_SUBSCRIPTION_CREATED: (_("Webhook added"), _("{actor} added a webhook ({object})")),
    a.WEBHOOK_SUBSCRIPTION_DELETED: (_("Webhook removed"), _("{actor} removed a webhook ({object})")),
    a.WEBHOOK_DELIVERY_FAILED: (_("Webhook call failed"), _("A webhook call could not be delivered ({object})")),
    a.WEBHOOK_DELIVERY_RETRIED: (_("Webhook call retried"), _("{actor} retried a webhook call ({object})")),
    # Authorizations
    a.AUTHORIZATION_GRANTED: (_("Authorization signed"), _("{actor} signed an authorization for {purpose} {channel}")),
    a.AUTHORIZATION_REVOKED: (_("Authorization revoked"), _("{actor} stopped {purpose} {channel}")),
    a.AUTHORIZATION_EXPIRY_EVENT_RECORDED: (_("Authorization ended by its event"), _("{actor} reported the event that ends {object} of {patient}")),
    a.AUTHORIZATION_DEFECT_RECORDED: (_("Authorization found defective"), _("{actor} recorded that {object} of {patient} is not valid")),
    a.AUTHORIZATION_PDF_EMAILED: (_("Signed copy emailed"), _("{patient} was emailed the signed copy of {object}")),
    a.AUTHORIZATION_PDF_EMAIL_FAILED: (_("Signed copy not emailed"), _("The signed copy of {object} could not be emailed to {patient}")),
    a.AUTHORIZATION_PDF_DOWNLOADED: (_("Signed copy downloaded"), _("{actor} downloaded the signed copy of {object}")),
    a.AUTHORIZATION_FHIR_EXPORTED: (_("Authorization exported as FHIR"), _("{actor} exported {object} of {patient} as a FHIR Consent")),
    a.INVITATION_CREATED: (_("Invitation to sign"), _("{actor} invited {patient} to sign for {purpose}")),
    # Purposes and forms
    a.PURPOSE_CREATED: (_("Purpose created"), _("{actor} created {object}")),
    a.PURPOSE_UPDATED: (_("Purpose changed"), _("{actor} changed {object}")),
    a.PURPOSE_TRACKING_CHANGED: (_("Open and click tracking changed"), _("{actor} changed open and click tracking for {object}")),
    a.AUTHORIZATION_FORM_CREATED: (_("Authorization form drafted"), _("{actor} drafted {object}")),
    a.AUTHORIZATION_FORM_UPDATED: (_("Authorization form changed"), _("{actor} changed the draft {object}")),
    a.AUTHORIZATION_FORM_PUBLISHED: (_("Authorization form published"), _("{actor} published {object}")),
    a.AUTHORIZATION_FORM_TRANSLATION_CREATED: (_("Form translation drafted"), _("{actor} drafted a translation of {object}")),
    # Suppressions and unsubscribes
    a.SUPPRESSION_RECORDED: (_("Address suppressed"), _("{actor} stopped all marketing mail to an address of {patient}")),
    a.UNSUBSCRIBE_VIEWED: (_("Unsubscribe page opened"), _("{patient} opened the unsubscribe page of a message")),
    a.UNSUBSCRIBE_BAD_TOKEN: (_("Unsubscribe link not ours"), _("Someone opened an unsubscribe link that is not one of ours")),
    a.UNSUBSCRIBE_BAD_TOKENS: (_("Unsubscribe links not ours"), _("Unsubscribe links that are not ours were opened")),
    a.UNSUBSCRIBE_UNDONE: (_("Unsubscribe undone"), _("{patient} undid a one-click unsubscribe minutes after it")),
    # Content library
    a.EMAIL_TEMPLATE_CREATED: (_("Template created"), _("{actor} created {object}")),
    a.EMAIL_TEMPLATE_UPDATED: (_("Template changed"), _("{actor} changed {object}")),
    a.EMAIL_TEMPLATE_APPROVED: (_("Template approved"), _("{actor} approved {object}")),
    a.EMAIL_TEMPLATE_RETIRED: (_("Template retired"), _("{actor} retired {object}")),
    a.CONTENT_BLOCK_CREATED: (_("Content block created"), _("{actor} created {object}")),
    a.CONTENT_BLOCK_UPDATED: (_("Content block changed"), _("{actor} changed {object}")),
    a.CONTENT_BLOCK_APPROVED: (_("Content block approved"), _("{actor} approved {object}")),
    a.CONTENT_BLOCK_RETIRED: (_("Content block retired"), _("{actor} retired {object}")),
    a.SEGMENT_SAVED: (_("Segment saved"), _("{actor} saved {object}")),
    # Campaigns
    a.CAMPAIGN_CREATED: (_("Campaign created"), _("{actor} created {object}")),
    a.CAMPAIGN_UPDATED: (_("Campaign edited"), _("{actor} edited {object}")),
    a.CAMPAIGN_SEGMENT_SET: (_("Campaign audience chosen"), _("{actor} chose the audience of {object}")),
    a.CAMPAIGN_SUBMITTED: (_("Campaign submitted for review"), _("{actor} submitted {object} for review")),
    a.CAMPAIGN_WITHDRAWN: (_("Campaign withdrawn from review"), _("{actor} withdrew {object} from review")),
    a.CAMPAIGN_DUPLICATED: (_("Campaign duplicated"), _("{actor} made {object} as a copy of another campaign")),
    a.CAMPAIGN_DRAFT_DELETED: (_("Draft deleted"), _("{actor} deleted the draft {object}")),
    a.CAMPAIGN_DRAFT_ACTION_REFUSED: (_("Draft change refused"), _("{actor} could not delete or withdraw {object}")),
    a.CAMPAIGN_SUBMIT_REFUSED: (_("Campaign submission refused"), _("{actor} could not submit {object}: it was not ready")),
    a.CAMPAIGN_APPROVED: (_("Campaign approved"), _("{actor} approved {object}")),
    a.CAMPAIGN_APPROVE_REFUSED: (_("Campaign approval refused"), _("{actor} could not approve {object}: its author cannot approve it")),
    a.CAMPAIGN_APPROVAL_VOIDED: (_("Campaign approval voided"), _("The approval of {object} was voided because it was edited")),
    a.CAMPAIGN_REJECTED: (_("Campaign rejected"), _("{actor} rejected {object}")),
    a.CAMPAIGN_SCHEDULED: (_("Campaign scheduled"), _("{actor} scheduled {object}")),
    a.CAMPAIGN_LAUNCHED: (_("Campaign started sending"), _("{actor} started sending {object}")),
    a.CAMPAIGN_LAUNCH_REFUSED: (_("Campaign start refused"), _("{object} could not start sending")),
    a.CAMPAIGN_PAUSED: (_("Campaign paused"), _("{actor} paused {object}")),
    a.CAMPAIGN_RESUMED: (_("Campaign resumed"), _("{actor} resumed {object}")),
    a.CAMPAIGN_CANCELLED: (_("Campaign cancelled"), _("{actor} cancelled {object}")),
    a.CAMPAIGN_SENT: (_("Campaign finished sending"), _("{object} finished sending")),
    a.CAMPAIGN_TEST_SENT: (_("Test message sent"), _("{actor} sent a test message of {object}")),
    a.CAMPAIGN_TEST_SEND_FAILED: (_("Test message failed"), _("{actor} tried to send a test message of {object}, but it failed")),
    a.CAMPAIGN_EVIDENCE_VIEWED: (_("Campaign evidence read"), _("{actor} read who received {object} and why others did not")),
    a.CAMPAIGN_RESULTS_DOWNLOADED: (_("Campaign results downloaded"), _("{actor} downloaded the results of {object}")),
    # Deliveries
    a.DELIVERY_BATCH_DISPATCHED: (_("Messages sent in a batch"), _("{actor} sent a batch of messages of {object}")),
    a.DELIVERY_BOUNCED: (_("Message bounced"), _("A message to {patient} bounced ({object})")),
    a.DELIVERY_COMPLAINED: (_("Spam complaint"), _("{patient} reported a message as spam ({object})")),
    # Journeys
    a.JOURNEY_CREATED: (_("Journey created"), _("{actor} created {object}")),
    a.JOURNEY_VERSION_CREATED: (_("Journey version drafted"), _("{actor} drafted version {version} of {object}")),
    a.JOURNEY_VERSION_UPDATED: (_("Journey version edited"), _("{actor} edited version {version} of {object}")),
    a.JOURNEY_SUBMITTED: (_("Journey submitted for review"), _("{actor} submitted version {version} of {object} for review")),
    a.JOURNEY_SUBMIT_REFUSED: (_("Journey submission refused"), _("{actor} could not submit {object}: it was not ready")),
    a.JOURNEY_APPROVED: (_("Journey approved"), _("{actor} approved version {version} of {object}")),
    a.JOURNEY_APPROVE_REFUSED: (_("Journey approval refused"), _("{actor} could not approve {object}: its author cannot approve it")),
    a.JOURNEY_REJECTED: (_("Journey rejected"), _("{actor} rejected version {version} of {object}")),
    a.JOURNEY_PAUSED: (_("Journey paused"), _("{actor} paused {object}")),
    a.JOURNEY_RESUMED: (_("Journey resumed"), _("{actor} resumed {object}")),
    a.JOURNEY_STOPPED: (_("Journey stopped"), _("{actor} stopped {object}")),
    a.JOURNEY_ENROLLED: (_("Patients entered a journey"), _("Patients entered {object}")),
    a.JOURNEY_STEPS_RUN: (_("Journey steps run"), _("{actor} ran the steps that were due in {object}")),
    a.JOURNEY_ENROLMENTS_EXITED: (_("Patients left a journey"), _("Patients left {object} after revoking their authorization")),
    a.JOURNEY_RESULTS_VIEWED: (_("Journey results read"), _("{actor} read the results of {object}")),
    # Reports and operations
    a.REPORT_EXPORTED: (_("Report exported"), _("{actor} exported a compliance report ({object})")),
    a.ENCRYPTION_ROTATED: (_("Encryption key rotated"), _("{actor} re-encrypted patient identifiers with the current key")),
    a.STANDING_REBUILT: (_("Live counts rebuilt"), _("{actor} rebuilt the live counts from the stored authorizations")),
}


def action_label(action: str) -> str:
    entry = SENTENCES.get(action)
    return str(entry[0]) if entry else action


# --- The phrases of one event ----------------------------------------------------------------------------------

# Object types whose id a name can stand for (audit.naming), and how each is said without one.
OBJECT_WORDS = {
    "campaign": _("campaign #{id}"),
    "journey": _("journey #{id}"),
    "segment": _("segment #{id}"),
    "purpose": _("purpose #{id}"),
    "email_template": _("template #{id}"),
    "content_block": _("content block #{id}"),
    "api_key": _("API key #{id}"),
    "authorization": _("authorization #{id}"),
    "authorization_form": _("authorization form #{id}"),
    "patient": _("patient #{id}"),
    "delivery": _("message #{id}"),
    "otp_device": _("a device"),
    "user": _("staff account #{id}"),
    "webhook_subscription": _("webhook #{id}"),
    "webhook_delivery": _("webhook call #{id}"),
    "invitation": _("invitation #{id}"),
    "patient_import": _("import #{id}"),
    "patient_event": _("care event #{id}"),
}
NAMED_OBJECTS = {
    "campaign": _("the campaign “{name}”"),
    "journey": _("the journey “{name}”"),
    "segment": _("the segment “{name}”"),
    "purpose": _("the purpose “{name}”"),
    "email_template": _("the template “{name}”"),
    "content_block": _("the content block “{name}”"),
    "api_key": _("the API key “{name}”"),
    "authorization_form": _("the authorization form {name}"),
}

ACTOR_ROLE_WORDS = {
    a.SYSTEM: _("The system"),
    a.PATIENT: _("The patient"),
    a.ANONYMOUS: _("Someone not signed in"),
    a.INTEGRATION: _("A connected system"),
    a.SUPERUSER: _("A superuser"),
    a.USER: _("A staff member"),
}

# A staff member's role, as actor_role holds it (the group names of accounts.roles, which this app cannot import).
ROLE_WORDS = {
    "marketer": _("marketer"),
    "compliance officer": _("compliance officer"),
    "administrator": _("administrator"),
}

CHANNEL_WORDS = {
    "portal": _("in the portal"),
    "web": _("on the web"),
    "one_click": _("with the one-click unsubscribe link"),
    "written": _("in writing, recorded by staff"),
    "import": _("by import"),
    "external": _("elsewhere, recorded through the API"),
    "email": _("by email"),
    "qr": _("with a QR code in a clinic"),
    "renewal": _("to renew an expired authorization"),
}


def object_kind_label(object_type: str) -> str:
    words = OBJECT_WORDS.get(object_type)
    if words is None:
        return object_type.replace("_", " ").replace(".", " ")
    return str(words).replace(" #{id}", "").removeprefix("a ")


@dataclass(frozen=True)
class EventWords:
    """The phrases a sentence is made of, for one event (plain text, not yet escaped)."""

    actor: str
    object: str
    patient: str
    purpose: str
    channel: str
    version: str
    actor_is_person: bool = False

    def sentence(self, action: str) -> str:
        entry = SENTENCES.get(action)
        template = str(entry[1]) if entry else "{actor}: " + action
        text = " ".join(template.format(**vars(self)).split())
        if not (self.actor_is_person and text.startswith(self.actor)):  # "staff1@…" stays as the address is written
            text = text[:1].upper() + text[1:]
        return text + "."


def actor_phrase(event, names) -> str:
    """Who acted: a staff member's name (or address) and role; an API key by name when the viewer may see it; the
    patient by number; otherwise what kind of actor it was."""
    role = event.actor_role or ""
    if event.actor_id:
        user = event.actor
        person = (user.get_full_name() or user.email or f"#{user.pk}").strip()
        # A user in two groups: "a,b".
        roles = ", ".join(str(ROLE_WORDS.get(part.strip(), part.strip())) for part in role.split(","))
        return f"{person} ({roles})" if role and role not in (a.SUPERUSER, a.USER) else person
    if role.startswith(a.API_KEY_PREFIX):
        key_id = role.removeprefix(a.API_KEY_PREFIX)
        name = names.get(("api_key", key_id))
        return str(NAMED_OBJECTS["api_key"]).format(name=name) if name else str(OBJECT_WORDS["api_key"]).format(id=key_id)
    if role == a.PATIENT and event.patient_id:
        return str(_("Patient #{id}")).format(id=event.patient_id)
    words = ACTOR_ROLE_WORDS.get(role)
    return str(words) if words is not None else (role or str(ACTOR_ROLE_WORDS[a.SYSTEM]))


def object_phrase(object_type: str, object_id: str, names) -> str:
    if not object_type:
        return str(_("something"))
    name = names.get((object_type, object_id))
    if name and object_type in NAMED_OBJECTS:
        return str(NAMED_OBJECTS[object_type]).format(name=name)
    words = OBJECT_WORDS.get(object_type)
    if words is None:  # the admin's model labels ("auth.user") and other kinds without a phrase
        label = object_type.replace("_", " ").replace(".", " ")
        return f"{label} #{object_id}" if object_id else label
    return str(words).format(id=object_id or "?")


def purpose_phrase(details: dict, names) -> str:
    code = details.get("purpose")
    purpose_id = details.get("purpose_id")
    name = None
    if isinstance(code, str) and code:
        name = names.get(("purpose_code", code))
        fallback = code.replace("_", " ").replace("-", " ")
    elif purpose_id is not None:
        name = names.get(("purpose", str(purpose_id)))
        fallback = str(OBJECT_WORDS["purpose"]).format(id=purpose_id)
    else:
        return str(_("a purpose"))
    return f"“{name}”" if name else fallback


def event_words(event, names) -> EventWords:
    details = event.details if isinstance(event.details, dict) else {}
    channel = details.get("channel")
    version = details.get("version")
    return EventWords(
        actor=actor_phrase(event, names),
        object=object_phrase(event.object_type, event.object_id, names),
        patient=str(_("patient #{id}")).format(id=event.patient_id) if event.patient_id else str(_("a patient")),
        purpose=purpose_phrase(details, names),
        channel=str(CHANNEL_WORDS.get(channel, "")) if isinstance(channel, str) else "",
        version=str(version) if isinstance(version, (int, str)) and not isinstance(version, bool) else "?",
        actor_is_person=bool(event.actor_id),
    )


def event_sentence(event, names=None) -> str:
    """The event as one sentence ("Patient #2 stopped “CPAP supplies” in the portal.")."""
    return event_words(event, names or {}).sentence(event.action)


# The detail keys in words, for the collapsible details of each event; any other key is shown with its
# underscores as spaces.
DETAIL_WORDS = {
    "from": _("from"), "to": _("to"), "reason": _("reason"), "channel": _("channel"), "purpose": _("purpose"),
    "purpose_id": _("purpose #"), "authorization_ids": _("authorizations #"), "kind": _("kind"), "via": _("via"),
    "found": _("found"), "by": _("looked up by"), "fields": _("fields changed"), "version": _("version"),
    "sent": _("messages sent #"), "failed": _("messages failed #"), "checked_at": _("checked at"),
    "sent_at": _("accepted by the mail server at"), "sent_authorization": _("covered by authorizations #"),
    "queued": _("queued"), "audience": _("audience"), "blocked": _("blocked"), "ok": _("intact"),
    "events": _("events walked"), "through_sequence": _("through sequence"), "checkpoints": _("checkpoints matched"),
    "break_sequence": _("broken at sequence"), "break_reason": _("why it broke"), "checks": _("checks"),
    "archived_through": _("archived through sequence"), "format": _("format"), "scopes": _("scopes"),
    "api_key_id": _("API key #"), "event_types": _("event types"), "status": _("status"), "source": _("source"),
    "campaign_id": _("campaign #"), "segment": _("segment #"), "page": _("page"), "exact": _("exact figures"),
    "total_rows": _("rows"), "mode": _("mode"), "created": _("created"), "updated": _("updated"),
    "rule_count": _("rules"), "for": _("for"), "has_scan": _("scan attached"), "representative": _("signed by a representative"),
}


def detail_label(key: str) -> str:
    words = DETAIL_WORDS.get(key)
    if words is not None:
        return str(words)
    if key.startswith("blocked_"):
        return str(_("blocked ({reason}) #")).format(reason=key.removeprefix("blocked_").replace("_", " "))
    return key.replace("_", " ")
