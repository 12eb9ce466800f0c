"""Campaigns and their deliveries. A delivery is the evidence of one decision: sent under an authorization,
or blocked with a reason (R-SEND-EVIDENCE); the database refuses a sent delivery without an authorization."""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from consent.models import Authorization, Patient, Purpose
from consent.selectors.coverage import CoverageGap


class Segment(models.Model):
    """A saved, reusable audience: a tree of rules over coded patient attributes, compiled to one SQL query
    (campaigns.segments). Rules never name a patient; they select by attributes only."""

    name = models.CharField(max_length=200)
    rules = models.JSONField(default=dict)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name


class ContentStatus(models.TextChoices):
    """The life of a library item. Only approved items can be picked for a campaign; an approved item never
    changes (a change is a copy, approved anew), so an approved campaign's content cannot change under it."""

    DRAFT = "draft", pgettext_lazy("content status", "Draft")
    APPROVED = "approved", pgettext_lazy("content status", "Approved")
    RETIRED = "retired", pgettext_lazy("content status", "Retired")


class _LibraryItem(models.Model):
    """What email templates and content blocks share: a name, a status, who wrote and who approved it."""

    name = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=ContentStatus.choices, default=ContentStatus.DRAFT)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.name


class EmailTemplate(_LibraryItem):
    """A message layout from the content library (campaigns.content renders it): a header above the campaign's
    content, a footer below it, and a stylesheet inlined into both. The legal footer (postal address, one-click
    unsubscribe: R-CANSPAM-ADDRESS, R-RFC8058) is added after it by the system and cannot be left out.
    HTML is stored sanitised (nh3) and may use merge fields ({{ first_name }}); the stylesheet is plain CSS."""

    header_html = models.TextField(blank=True)
    footer_html = models.TextField(blank=True)
    css = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="approved") | Q(approved_at__isnull=False, approved_by__isnull=False),
                name="email_template_approved_has_approver",
            )
        ]


class ContentBlock(_LibraryItem):
    """An approved HTML snippet from the content library: a campaign's content is an ordered list of them.
    Stored sanitised (nh3); may use merge fields ({{ first_name }}) within what the purpose allows.
    `purposes`: the purposes a campaign may use it for; none listed means every purpose (issue 17: CPAP blocks were
    offered for, and submitted in, a diabetes campaign). Fixed once approved, like the HTML."""

    html = models.TextField()
    purposes = models.ManyToManyField(Purpose, blank=True, related_name="+")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="approved") | Q(approved_at__isnull=False, approved_by__isnull=False),
                name="content_block_approved_has_approver",
            )
        ]


class Campaign(models.Model):
    class Kind(models.TextChoices):
        # A one-off campaign, launched once to its audience.
        CAMPAIGN = "campaign", _("Campaign")
        # The content and deliveries of one send step of a journey version (journeys.models.JourneyStep): its
        # deliveries are created one by one as enrolments reach the step, and it stays "sending" while the
        # journey runs. Approved with its journey version; never listed among campaigns.
        JOURNEY_STEP = "journey_step", _("Journey step")

    class Status(models.TextChoices):
        DRAFT = "draft", pgettext_lazy("campaign status", "Draft")
        SUBMITTED = "submitted", pgettext_lazy("campaign status", "Submitted for approval")
        APPROVED = "approved", pgettext_lazy("campaign status", "Approved")
        REJECTED = "rejected", pgettext_lazy("campaign status", "Rejected")
        SCHEDULED = "scheduled", pgettext_lazy("campaign status", "Scheduled")
        SENDING = "sending", pgettext_lazy("campaign status", "Sending")
        PAUSED = "paused", pgettext_lazy("campaign status", "Paused")
        SENT = "sent", pgettext_lazy("campaign status", "Sent")
        CANCELLED = "cancelled", pgettext_lazy("campaign status", "Cancelled")

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.CAMPAIGN, db_default=Kind.CAMPAIGN)
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="campaigns")
    # None: every patient (the launch still blocks the uncovered).
    segment = models.ForeignKey(Segment, null=True, blank=True, on_delete=models.PROTECT, related_name="campaigns")
    subject = models.CharField(max_length=200)
    # The marketer's own words above the library blocks: plain text (never HTML), with merge fields
    # (ADR 0005). The layout and the blocks come from the content library.
    body_text = models.TextField(blank=True)
    template = models.ForeignKey(
        EmailTemplate, null=True, blank=True, on_delete=models.PROTECT, related_name="campaigns"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    # The IANA zone the schedule was entered in, shown back to staff beside the time (stored in UTC).
    schedule_timezone = models.CharField(max_length=64, blank=True)
    # The last review: who approved (never the author) and when; a rejection's comment for the author.
    # The comment is staff prose about content, never a patient's data; the audit trail records its length only.
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    review_comment = models.TextField(blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    launched_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


class CampaignBlock(models.Model):
    """One content block in a campaign's content, at its position (0 first)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="content_blocks")
    block = models.ForeignKey(ContentBlock, on_delete=models.PROTECT, related_name="campaign_uses")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["campaign", "position"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "position"], name="campaign_block_one_per_position")
        ]

    def __str__(self) -> str:
        return f"Campaign #{self.campaign_id} block {self.position}"


class Delivery(models.Model):
    """One row per campaign and patient: the whole audience, sent or blocked, is on the report."""

    class Status(models.TextChoices):
        QUEUED = "queued", pgettext_lazy("delivery status", "Queued")
        SENT = "sent", pgettext_lazy("delivery status", "Sent")
        BLOCKED = "blocked", pgettext_lazy("delivery status", "Blocked")
        FAILED = "failed", pgettext_lazy("delivery status", "Failed")

    class BlockReason(models.TextChoices):
        NO_AUTHORIZATION = CoverageGap.NO_AUTHORIZATION, _("No authorization")
        WRONG_PURPOSE = CoverageGap.WRONG_PURPOSE, _("Authorization for another purpose only")
        EXPIRED = CoverageGap.EXPIRED, _("Authorization expired")
        REVOKED = CoverageGap.REVOKED, _("Authorization revoked")
        EXPIRY_EVENT = CoverageGap.EXPIRY_EVENT, _("Authorization ended by its expiry event")
        DEFECT_MISSING_ELEMENT = CoverageGap.DEFECT_MISSING_ELEMENT, _("Defective: lacks a required element")
        DEFECT_COMPOUND = CoverageGap.DEFECT_COMPOUND, _("Defective: compound")
        DEFECT_CONDITIONED = CoverageGap.DEFECT_CONDITIONED, _("Defective: conditioned")
        DEFECT_FALSE_INFORMATION = CoverageGap.DEFECT_FALSE_INFORMATION, _("Defective: false information")
        SUPPRESSED = CoverageGap.SUPPRESSED, _("Address suppressed")
        BOUNCED = CoverageGap.BOUNCED, _("Address bounced")
        UNSUBSCRIBED = "unsubscribed", _("Unsubscribed")
        CAMPAIGN_CANCELLED = "campaign_cancelled", _("Campaign cancelled before sending")
        # The organisation's frequency cap (HIPAAMAIL_FREQUENCY_CAP): this patient had enough marketing messages.
        FREQUENCY_CAP = "frequency_cap", _("Frequency cap reached")

    # No single-column indexes on these two: the unique (campaign, patient, sequence) and (patient, created_at)
    # lead with them, and every index is one more write per delivery.
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="deliveries", db_index=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="deliveries", db_index=False)
    # 0 for a campaign's; a journey step's: the patient's enrolment number in that journey (one message per step
    # and enrolment, and a patient may enter a journey again).
    sequence = models.PositiveIntegerField(default=0, db_default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    authorization = models.ForeignKey(
        Authorization, null=True, blank=True, on_delete=models.PROTECT, related_name="deliveries"
    )
    block_reason = models.CharField(max_length=32, choices=BlockReason.choices, blank=True)
    # Derived from the delivery's id, so a message re-sent after a crash carries the same Message-ID.
    message_id = models.CharField(max_length=200, blank=True)
    # Per message, in the database's clock (ADR 0010): when the coverage check that allowed it ran, and when the
    # mail server accepted it (its 250 to DATA). The sender keeps sent_at - checked_at within SEND_CHECK_WINDOW.
    checked_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # A failed delivery keeps the server's SMTP reply code (e.g. 550) beside the short error text.
    smtp_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=200, blank=True)
    # The send pipeline's lease: a worker that claimed this delivery and did not finish by then is presumed
    # dead; the reconciler queues it again. `attempts` counts claims. `possible_duplicate`: a message may have
    # reached the mail server that this row does not record — claimed again after its worker stopped (same
    # Message-ID), or cancelled while still under such a claim.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    possible_duplicate = models.BooleanField(default=False)
    # What happened after the mail server took the message: a bounce reported later (DSN or provider webhook),
    # a spam complaint. A hard bounce also suppresses the address (consent.Suppression).
    bounced_at = models.DateTimeField(null=True, blank=True)
    bounce_type = models.CharField(
        max_length=10, blank=True, choices=[("hard", "Hard bounce"), ("soft", "Soft bounce")]
    )
    complained_at = models.DateTimeField(null=True, blank=True)
    # Opt-in tracking (Purpose.tracking_enabled): the first open and the first click, for aggregate counts.
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "patient", "sequence"], name="delivery_one_per_campaign_patient_and_sequence"
            ),
            # R-SEND-COVERED / R-SEND-EVIDENCE, in the database: a sent delivery names its authorization,
            # a blocked one its reason.
            models.CheckConstraint(
                condition=~Q(status="sent")
                | Q(authorization__isnull=False, sent_at__isnull=False, checked_at__isnull=False),
                name="delivery_sent_has_authorization",
            ),
            models.CheckConstraint(
                condition=~Q(status="blocked") | ~Q(block_reason=""), name="delivery_blocked_has_reason"
            ),
        ]
        indexes = [
            models.Index(fields=["campaign", "status"]),
            # The sender's claim (queued rows of one campaign, lowest ids first, FOR UPDATE SKIP LOCKED) reads only
            # the rows it takes, whatever the campaign's size (docs/benchmarks.md, issue 14).
            models.Index(fields=["campaign", "id"], condition=Q(status="queued"), name="delivery_queued_claim"),
            # The frequency cap counts a patient's recent messages.
            models.Index(fields=["patient", "created_at"], name="delivery_by_patient_and_time"),
        ]

    def __str__(self) -> str:
        return f"Delivery #{self.pk}"


class Notice(models.Model):
    """A note to one staff member about a review (issue 17): a campaign or a journey version waits for their review
    (to compliance officers and administrators, on submit), or theirs was approved, rejected (with the reviewer's
    comment) or, for a campaign, sent (to its author). Shown in the notices list and mailed once, after the commit
    (campaigns.notices). Never about a patient: the campaign or journey, who acted, and a reviewer's comment about
    content. Nobody gets a notice of their own action.

    campaigns may not import journeys (the layers contract), so a journey's notice has no foreign key to it: it keeps
    the name it shows (`subject`, "CPAP welcome · v2") and the path it opens (`link`), both given by the journeys
    app. A campaign's notice has its campaign and shows its current name."""

    class Kind(models.TextChoices):
        SUBMITTED = "submitted", _("Waiting for your review")
        APPROVED = "approved", pgettext_lazy("notice kind", "Approved")
        REJECTED = "rejected", pgettext_lazy("notice kind", "Rejected")
        SENT = "sent", pgettext_lazy("notice kind", "Sent")

    class About(models.TextChoices):
        CAMPAIGN = "campaign", _("Campaign")
        JOURNEY = "journey", _("Journey")

    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    about = models.CharField(max_length=10, choices=About.choices, default=About.CAMPAIGN)
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.CASCADE, related_name="notices")
    # A journey's notice: the journey version's name as shown, and the path of the page it opens.
    subject = models.CharField(max_length=250, blank=True)
    link = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    # Who acted (None: the system, for "sent").
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A rejection's comment as it was written then (the campaign keeps only its last one).
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["recipient", "read_at"], name="notice_by_recipient_unread"),
            models.Index(fields=["recipient", "-created_at"], name="notice_by_recipient_newest"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(about="campaign", campaign__isnull=False)
                | (
                    Q(about="journey", campaign__isnull=True, link__startswith="/")
                    & ~Q(subject="")
                    & ~Q(link__startswith="//")
                ),
                name="notice_has_what_it_is_about",
            )
        ]

    @property
    def name(self) -> str:
        """What the notice is about, as it shows it: the campaign's name, or the journey version's."""
        return self.campaign.name if self.campaign_id else self.subject

    def __str__(self) -> str:
        return f"Notice #{self.pk}"
