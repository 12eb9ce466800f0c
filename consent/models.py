"""Patients, purposes, authorization form versions, authorizations and what ends them.

Authorizations and everything that ends one (revocations, expiry events, defects) are append-only evidence:
an authorization is never edited to end it; a row of its own records why it ended. Whether an authorization
covers a patient for a purpose at an instant is decided in one place only:
consent.selectors.coverage.authorization_covering_list.
"""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from consent.fields import EncryptedTextField


class Language(models.TextChoices):
    """The languages a patient reads the portal, their mail and their forms in (settings.LANGUAGES)."""

    ENGLISH = "en", pgettext_lazy("a language named in itself", "English")
    SPANISH = "es", pgettext_lazy("a language named in itself", "Español")


class Patient(models.Model):
    """Direct identifiers are encrypted at rest (R-SEC-ENCRYPT-REST) and found through keyed digests; the
    coded attributes that segments use stay queryable."""

    external_id = EncryptedTextField(blank=True)  # the EHR's or CRM's record number
    external_id_digest = models.CharField(max_length=64, blank=True)
    email = EncryptedTextField()
    email_digest = models.CharField(max_length=64, unique=True)
    full_name = EncryptedTextField()
    phone = EncryptedTextField(blank=True)
    street_address = EncryptedTextField(blank=True)
    birth_date = EncryptedTextField(blank=True)  # ISO 8601
    birth_year = models.PositiveSmallIntegerField(null=True, blank=True)
    sex = models.CharField(max_length=1, blank=True, choices=[("F", _("Female")), ("M", _("Male")), ("X", _("Other"))])
    postal_code = models.CharField(max_length=10, blank=True, db_index=True)
    state = models.CharField(max_length=2, blank=True)
    last_visit = models.DateField(null=True, blank=True)
    # When the next refill or supply replacement is due (journeys trigger on it, ADR 0016).
    refill_due = models.DateField(null=True, blank=True)
    # The patient's IANA time zone, for journey send times and quiet hours; "" is the organisation's (TIME_ZONE).
    time_zone = models.CharField(max_length=64, blank=True, default="", db_default="")
    # The language of their mail, of the portal when they arrive from a link, and of the form they are offered.
    language = models.CharField(max_length=5, choices=Language.choices, default=Language.ENGLISH, db_default="en")
    # How many purposes the patient has signed an authorization for, in any state (revoked and expired count):
    # the live counts' "another purpose only" without reading the authorizations (ADR 0021). Kept by
    # consent.services.authorizations.authorization_grant, under the patient's row lock.
    authorized_purposes = models.PositiveSmallIntegerField(default=0, db_default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["external_id_digest"], condition=~Q(external_id_digest=""), name="patient_unique_external_id"
            )
        ]
        indexes = [
            # Segments filter on these coded attributes (campaigns.segments); with the id and the address digest
            # (suppressions) and the count of authorized purposes in the index, a segment's live counts read this
            # index alone, never the table, whose rows are wide with encrypted identifiers (at 1,000,000 patients:
            # about 110 MB of index against 600 MB of table; issue 15, docs/benchmarks.md). INCLUDE is
            # PostgreSQL's; SQLite indexes the key columns.
            models.Index(
                fields=["birth_year", "state", "sex", "last_visit", "postal_code"],
                include=["id", "email_digest", "authorized_purposes"],
                name="patient_segment_attributes",
            )
        ]

    def __str__(self) -> str:
        # Never the name or address: strings of objects end up in logs and error pages (R-NO-PHI-LEAK).
        return f"Patient #{self.pk}"


class PatientCondition(models.Model):
    """A coded condition (ICD-10 or a local code) of a patient, for segments."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="conditions")
    code = models.CharField(max_length=20, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["patient", "code"], name="patient_condition_unique")]


class ProgramEnrolment(models.Model):
    """A patient's current enrolment in one of the organisation's programs (a local code such as DPP or
    CPAP-RESUPPLY), for segments: a row while enrolled, from the EHR or CRM import."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="programs")
    code = models.CharField(max_length=40, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["patient", "code"], name="program_enrolment_unique")]


class Purpose(models.Model):
    class Kind(models.TextChoices):
        MARKETING = "marketing", _("Marketing (needs a HIPAA authorization)")
        TREATMENT = "treatment", _("Treatment or operations (needs a stored consent to email)")

    code = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField()
    # How Spanish-reading patients see it named and described (issue 17, item 6); "" shows the name as written.
    name_es = models.CharField(max_length=120, blank=True, default="", db_default="")
    description_es = models.TextField(blank=True, default="", db_default="")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # R-PURPOSE-REMUNERATION: a third party paying for the communication makes it marketing.
    third_party_paid = models.BooleanField(default=False)
    # Opens and clicks are counted only for purposes that turn tracking on (off by default); marketers see
    # them in aggregate only.
    tracking_enabled = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(kind="treatment", third_party_paid=True),
                name="purpose_paid_communication_is_marketing",
                violation_error_message=(
                    "A communication a third party pays for is marketing (45 CFR 164.501); "
                    "choose the marketing kind."
                ),
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def shown_name(self) -> str:
        """The name a patient reads, in the active language, exactly as staff wrote it (never lower-cased)."""
        if self.name_es and (translation.get_language() or "").startswith(Language.SPANISH):
            return self.name_es
        return self.name

    @property
    def shown_description(self) -> str:
        if self.description_es and (translation.get_language() or "").startswith(Language.SPANISH):
            return self.description_es
        return self.description


class AuthorizationForm(models.Model):
    """One version of the authorization form of one purpose (R-AUTH-NO-COMPOUND: one purpose per form).

    Every element and statement 45 CFR 164.508(c) requires is a field of its own, so that publishing can name
    each one that is missing. Once published a version never changes (a database trigger refuses it,
    R-AUTH-IMMUTABLE); a change is a new version, and those who signed an old one stay covered by it.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        PUBLISHED = "published", _("Published")

    class ExpiryKind(models.TextChoices):
        MONTHS = "months", _("A number of months after signing")
        DATE = "date", _("On a fixed date")
        EVENT = "event", _("When an event happens")

    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="forms")
    version = models.PositiveIntegerField()
    # A version is written in one language. A translation (ADR 0026) is the same version of the same purpose, with
    # the same expiry and the same patient fields, its text in another language, linked to the English version.
    language = models.CharField(max_length=5, choices=Language.choices, default=Language.ENGLISH, db_default="en")
    translation_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="translations"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    title = models.CharField(max_length=200)
    # R-AUTH-CORE-1: what information, in words and as the patient fields messages may use (R-SEND-SCOPE).
    information_description = models.TextField(blank=True)
    merge_fields = models.JSONField(default=list, blank=True)
    authorized_party = models.TextField(blank=True)  # R-AUTH-CORE-2
    recipients_description = models.TextField(blank=True)  # R-AUTH-CORE-3
    purpose_description = models.TextField(blank=True)  # R-AUTH-CORE-4
    expiry_kind = models.CharField(max_length=10, choices=ExpiryKind.choices, blank=True)  # R-AUTH-CORE-5
    expiry_months = models.PositiveSmallIntegerField(null=True, blank=True)
    expiry_date = models.DateField(null=True, blank=True)
    expiry_event = models.TextField(blank=True)
    signature_statement = models.TextField(blank=True)  # R-AUTH-CORE-6 and R-AUTH-ESIGN: what signing means
    revocation_statement = models.TextField(blank=True)  # R-AUTH-STMT-REVOKE
    revocation_address = models.TextField(blank=True)
    conditioning_statement = models.TextField(blank=True)  # R-AUTH-STMT-CONDITION
    redisclosure_statement = models.TextField(blank=True)  # R-AUTH-STMT-REDISCLOSURE
    remuneration_statement = models.TextField(blank=True)  # R-AUTH-STMT-REMUNERATION
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    published_at = models.DateTimeField(null=True, blank=True)
    text_hash = models.CharField(max_length=64, blank=True)  # SHA-256 of the published text

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["purpose", "version", "language"], name="authorization_form_version_language_unique"
            ),
            models.CheckConstraint(
                condition=Q(language="en", translation_of__isnull=True) | (~Q(language="en") & Q(translation_of__isnull=False)),
                name="authorization_form_translation_has_original",
            ),
            models.CheckConstraint(
                condition=Q(status="draft") | (Q(published_at__isnull=False) & ~Q(text_hash="")),
                name="authorization_form_published_has_hash",
            ),
        ]

    def __str__(self) -> str:
        suffix = "" if self.language == Language.ENGLISH else f" ({self.language})"
        return f"{self.purpose.code} v{self.version}{suffix}"


class Authorization(models.Model):
    """A signed authorization (marketing) or stored consent (treatment) for exactly one purpose."""

    class Channel(models.TextChoices):
        WEB = "web", _("Signed on the web")
        WRITTEN = "written", _("Written, recorded by staff")
        IMPORT = "import", _("Imported")
        EXTERNAL = "external", _("Captured elsewhere, recorded through the API")
        # The patient undid a one-click unsubscribe within minutes (ADR 0027): the authorization they had signed,
        # stored again from now on, its text, signature and end unchanged.
        REINSTATED = "reinstated", _("Reinstated by the patient after a one-click unsubscribe")

    # Indexed by the two composite indexes below (each leads with one of them), not by an index of its own.
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="authorizations", db_index=False)
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="authorizations", db_index=False)
    form_version = models.ForeignKey(
        AuthorizationForm, null=True, blank=True, on_delete=models.PROTECT, related_name="authorizations"
    )
    signed_at = models.DateTimeField()
    # R-AUTH-CORE-5: an expiry date or an expiry event, never neither.
    expires_at = models.DateTimeField(null=True, blank=True)
    expiry_event = models.TextField(blank=True)
    # R-AUTH-COPY, R-AUTH-ESIGN: the exact text shown at signing and its SHA-256.
    document_text = models.TextField(blank=True)
    text_hash = models.CharField(max_length=64, blank=True)
    signature_name = EncryptedTextField(blank=True)  # typed full name
    signed_by_representative = models.BooleanField(default=False)
    representative_authority = EncryptedTextField(blank=True)  # R-AUTH-CORE-6
    signed_ip = EncryptedTextField(blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    pdf = models.FileField(upload_to="authorizations/", blank=True)
    scan = models.FileField(upload_to="scans/", blank=True)  # a paper authorization recorded by staff
    channel = models.CharField(max_length=20, choices=Channel.choices, default=Channel.WEB)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Channel REINSTATED: the revoked authorization this one stores again (ADR 0027).
    reinstates = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reinstated_by"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # THE predicate's scan of a purpose's authorizations (consent.selectors.coverage) reads this index
            # alone: the table's rows carry the signed text and are ten times wider (issue 15).
            models.Index(
                fields=["purpose", "patient"], include=["id", "signed_at", "expires_at"], name="authorization_coverage"
            ),
            # A patient's authorizations, and whether they have one for another purpose (the live counts'
            # "another purpose only"), without reading the table.
            models.Index(fields=["patient", "purpose"], name="authorization_patient_purpose"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True) | Q(expires_at__gt=models.F("signed_at")),
                name="authorization_expires_after_signing",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__isnull=False) | ~Q(expiry_event=""),
                name="authorization_has_expiry_date_or_event",
                violation_error_message=_("An authorization needs an expiration date or an expiration event."),
            ),
        ]

    def __str__(self) -> str:
        return f"Authorization #{self.pk}"


class Revocation(models.Model):
    """The end of an authorization, effective when this row commits (R-REVOKE-ANYTIME)."""

    class Channel(models.TextChoices):
        PORTAL = "portal", _("Patient portal")
        ONE_CLICK = "one_click", _("One-click unsubscribe")
        WRITTEN = "written", _("Written, recorded by staff")
        IMPORT = "import", _("Imported")
        EXTERNAL = "external", _("Received elsewhere, recorded through the API")

    authorization = models.OneToOneField(Authorization, on_delete=models.PROTECT, related_name="revocation")
    revoked_at = models.DateTimeField(db_default=models.functions.Now())
    channel = models.CharField(max_length=20, choices=Channel.choices)
    scan = models.FileField(upload_to="scans/", blank=True)  # R-REVOKE-WRITTEN: the letter, scanned
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    def __str__(self) -> str:
        return f"Revocation of authorization #{self.authorization_id}"


class ExpiryEvent(models.Model):
    """The expiration event of an event-based authorization happened (R-AUTH-DEFECTIVE): coverage ends at
    `occurred_at`, as it does when an expiry date passes."""

    authorization = models.OneToOneField(Authorization, on_delete=models.PROTECT, related_name="expiry_record")
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField(db_default=models.functions.Now())
    source = models.CharField(max_length=20, choices=[("staff", _("Staff")), ("integration", _("Integration"))])
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )


class AuthorizationDefect(models.Model):
    """A defect that makes an authorization invalid (164.508(b)(2), R-AUTH-DEFECTIVE), found after signing."""

    class Reason(models.TextChoices):
        MISSING_ELEMENT = "defect_missing_element", _("Lacks a required element")
        COMPOUND = "defect_compound", _("Combined with another document")
        CONDITIONED = "defect_conditioned", _("Care or benefits were conditioned on signing")
        FALSE_INFORMATION = "defect_false_information", _("Material information known to be false")

    authorization = models.ForeignKey(Authorization, on_delete=models.PROTECT, related_name="defects")
    reason = models.CharField(max_length=32, choices=Reason.choices)
    recorded_at = models.DateTimeField(db_default=models.functions.Now())
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["authorization", "reason"], name="authorization_defect_unique")
        ]


class AuthorizationStanding(models.Model):
    """An authorization's standing, for the segment builder's live counts (ADR 0021): its dates and what ended it, in
    one narrow row, so that counting a purpose over a million patients reads one index instead of the wide
    authorizations and the tables that end them.

    Derived, never evidence, and never a decision: what is sent is decided by THE predicate over the evidence
    (consent.selectors.coverage.authorization_covering_list), at launch and again under lock at send time. Written by
    consent.services.authorizations in the very transaction that writes the evidence (a grant, a revocation, a
    defect, an expiry event), under the authorization's row lock; `authorization_standing --check` compares every row
    with the evidence and `--rebuild` rewrites them from it. Time-based ends (the expiry date, the expiry event's
    instant) are stored as instants and compared with the clock when counted."""

    # DO_NOTHING: a summary protects nothing; the evidence's own trigger refuses an authorization's deletion.
    authorization = models.OneToOneField(
        Authorization, primary_key=True, on_delete=models.DO_NOTHING, related_name="standing"
    )
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="+", db_index=False)
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="+", db_index=False)
    signed_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True)
    expiry_event_at = models.DateTimeField(null=True)  # when its recorded expiry event occurred
    # The strongest end that does not depend on the clock: "revoked" or a defect's reason (CoverageGap's
    # ranking, consent.selectors.coverage); "" while none is recorded.
    ended_by = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        indexes = [
            # The live counts read a purpose's rows from this index alone (an index-only scan, PostgreSQL).
            models.Index(
                fields=["purpose", "patient"],
                include=["signed_at", "expires_at", "expiry_event_at", "ended_by"],
                name="standing_by_purpose",
            )
        ]

    def __str__(self) -> str:
        return f"Standing of authorization #{self.authorization_id}"


class Invitation(models.Model):
    """An invitation to sign the current form of a purpose: emailed as a link or shown as a QR code in a
    clinic. The token itself is never stored, only its digest, and it names nothing (no PHI in URLs)."""

    class Channel(models.TextChoices):
        EMAIL = "email", _("Email")
        QR = "qr", _("QR code in a clinic")
        RENEWAL = "renewal", _("Renewal of an expired authorization")

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="invitations")
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="invitations")
    token_digest = models.CharField(max_length=64, unique=True)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )


class PatientImport(models.Model):
    """A CSV import of patients: previewed first, then written whole or not at all, with its progress.
    Errors name a row and a column, never the value found there (R-NO-PHI-LEAK)."""

    class Status(models.TextChoices):
        UPLOADED = "uploaded", _("Uploaded")
        PREVIEWED = "previewed", _("Previewed")
        IMPORTING = "importing", _("Importing")
        DONE = "done", _("Imported")
        FAILED = "failed", _("Failed")

    class Mode(models.TextChoices):
        CREATE = "create", _("New patients only (a patient already here is an error)")
        UPDATE = "update", _("Create or update by record number (a nightly export)")

    file = models.FileField(upload_to="imports/")
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.CREATE)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.UPLOADED)
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)  # [{"row": 7, "column": "email", "code": "bad_email"}]
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)


class Suppression(models.Model):
    """An address no marketing message may go to any more (R-BOUNCE-SUPPRESS): a hard bounce, a spam
    complaint, or staff's decision. Kept by the address's keyed digest, so it also holds for a patient
    imported again under the same address."""

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", _("Hard bounce")
        SOFT_BOUNCES = "soft_bounces", _("Repeated soft bounces")
        COMPLAINT = "complaint", _("Spam complaint")
        MANUAL = "manual", _("Suppressed by staff")

    email_digest = models.CharField(max_length=64, unique=True)
    reason = models.CharField(max_length=20, choices=Reason.choices)
    smtp_code = models.CharField(max_length=10, blank=True)
    created_at = models.DateTimeField(db_default=models.functions.Now())
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )


class PatientEvent(models.Model):
    """Something that happened in a patient's care, reported by an EHR, CRM or practice-management system
    (consent.events holds the vocabulary). Stored once per (source, source_event_id): a system that sends the same
    event twice stores it once. Attributes are codes (an equipment type, a CPT or RxNorm code), never free text."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="events")
    type = models.CharField(max_length=40)
    occurred_at = models.DateTimeField()
    attributes = models.JSONField(default=dict, blank=True)
    source = models.SlugField(max_length=50)
    source_event_id = models.CharField(max_length=100)
    received_at = models.DateTimeField(db_default=models.functions.Now())
    # Set by the journeys' intake once it has routed the event (enrolments, branches, conversions): the intake
    # takes events where this is null, so an event committed late is never skipped (ADR 0016).
    journeys_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "source_event_id"], name="patient_event_unique_per_source")
        ]
        indexes = [
            models.Index(fields=["id"], condition=Q(journeys_seen_at__isnull=True), name="patient_event_unrouted"),
            models.Index(fields=["patient", "-occurred_at"], name="patient_event_by_patient"),
            models.Index(fields=["type", "occurred_at"], name="patient_event_by_type"),
        ]

    def __str__(self) -> str:
        return f"Event #{self.pk} ({self.type})"
