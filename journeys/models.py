"""Journeys: lifecycle messages triggered by what happens in care (ADR 0016).

A journey has a purpose and versions; a version has a trigger and steps, is written by a marketer and approved by
a compliance officer (never its author), and never changes once submitted: an edit is a new version. A patient is
enrolled once per trigger (the unique `trigger_key`) and in one running enrolment of a journey at a time; the
enrolment finishes on the version it started. Each send step owns a campaign of kind `journey_step` that holds
its content, so every journey message is a `campaigns.Delivery` sent by the one sender and checked by the one
predicate at the moment of sending, exactly as a campaign's (R-SEND-COVERED).

Due steps are found by an indexed scan of `Enrolment.due_at` (journeys.engine.steps), never by one Celery ETA task
per step: the truth is in the database, Celery messages only wake the scanner.
"""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from campaigns.models import Campaign, Delivery, Segment
from consent.models import Patient, Purpose


class Journey(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", pgettext_lazy("journey status", "Draft")  # no version approved yet
        ACTIVE = "active", pgettext_lazy("journey status", "Active")  # enrolling on its live version
        PAUSED = "paused", pgettext_lazy("journey status", "Paused")  # no enrolment, step or send until resumed
        # For good: running enrolments ended, queued messages blocked.
        STOPPED = "stopped", pgettext_lazy("journey status", "Stopped")

    name = models.CharField(max_length=200)
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="journeys")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    # The approved version new enrolments start on (running ones finish on their own).
    live_version = models.ForeignKey(
        "JourneyVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Trigger(models.TextChoices):
    EVENT = "event", _("A care event")
    DATE = "date", _("A date on the patient's record")
    SEGMENT = "segment", _("Entering a segment")
    EXPIRY = "expiry", _("An authorization nearing its expiry")


class Reentry(models.TextChoices):
    NEVER = "never", _("Once per patient, ever")
    AFTER_EXIT = "after_exit", _("Again after the previous enrolment ended")
    AFTER_DAYS = "after_days", _("Again, some days after the previous enrolment began")


class JourneyVersion(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", pgettext_lazy("journey version status", "Draft")
        SUBMITTED = "submitted", pgettext_lazy("journey version status", "Submitted for approval")
        APPROVED = "approved", pgettext_lazy("journey version status", "Approved (live)")
        REJECTED = "rejected", pgettext_lazy("journey version status", "Rejected")
        SUPERSEDED = "superseded", pgettext_lazy("journey version status", "Superseded by a later version")

    journey = models.ForeignKey(Journey, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT)
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    # EVENT: the type and optional coded conditions on its attributes ({"equipment_type": "CPAP"}).
    event_type = models.CharField(max_length=40, blank=True)
    event_conditions = models.JSONField(default=dict, blank=True)
    # DATE: a date field of the patient's record (journeys.dates) plus an offset in days (negative: before).
    date_field = models.CharField(max_length=40, blank=True)
    offset_days = models.SmallIntegerField(default=0)
    # SEGMENT: the segment whose new members enter.
    segment = models.ForeignKey(Segment, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # EXPIRY: how many days before an authorization for the purpose expires.
    days_before_expiry = models.PositiveSmallIntegerField(default=30)
    reentry = models.CharField(max_length=12, choices=Reentry.choices, default=Reentry.AFTER_EXIT)
    reentry_days = models.PositiveSmallIntegerField(default=0)
    # The goal: an enrolment converts when this event happens within `conversion_days` of its start, and
    # exits at once when it is still running. Optional.
    conversion_event_type = models.CharField(max_length=40, blank=True)
    conversion_days = models.PositiveSmallIntegerField(default=30)
    # A random hold-out share (0 to 50 %) that is sent nothing, to measure conversion against.
    holdout_percent = models.PositiveSmallIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    # The last review's comment (staff prose about the journey, never a patient's data).
    review_comment = models.TextField(blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["journey", "number"], name="journey_version_unique_number"),
            models.UniqueConstraint(
                fields=["journey"], condition=Q(status="approved"), name="journey_one_live_version"
            ),
            models.CheckConstraint(
                condition=~Q(status="approved") | Q(approved_by__isnull=False, approved_at__isnull=False),
                name="journey_version_approved_has_approver",
            ),
            models.CheckConstraint(condition=Q(holdout_percent__lte=50), name="journey_version_holdout_at_most_half"),
        ]

    def __str__(self) -> str:
        return f"{self.journey} v{self.number}"


class StepKind(models.TextChoices):
    SEND = "send", _("Send a message")
    WAIT = "wait", _("Wait")
    BRANCH = "branch", _("Branch")
    EXIT = "exit", _("Exit")


class JourneyStep(models.Model):
    """One step of a version, at its position (1 first). After a step the enrolment goes to `next_position`
    (None: the following position; past the last step the journey is complete). A branch goes to `yes_position`
    when its event (or a click) happens within `wait_minutes`, else to `no_position` (None: the following one)."""

    version = models.ForeignKey(JourneyVersion, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=10, choices=StepKind.choices)
    # SEND: the campaign (kind journey_step) that holds the message's content and its deliveries.
    campaign = models.OneToOneField(
        Campaign, null=True, blank=True, on_delete=models.PROTECT, related_name="journey_step"
    )
    # WAIT: a duration, then (optionally) until the next `until_local_time` in the patient's time zone.
    # BRANCH: how long to wait for the event or click.
    wait_minutes = models.PositiveIntegerField(default=0)
    until_local_time = models.TimeField(null=True, blank=True)
    branch_event_type = models.CharField(max_length=40, blank=True)
    branch_event_conditions = models.JSONField(default=dict, blank=True)
    branch_on_click = models.BooleanField(default=False)
    yes_position = models.PositiveSmallIntegerField(null=True, blank=True)
    no_position = models.PositiveSmallIntegerField(null=True, blank=True)
    next_position = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["version", "position"]
        constraints = [
            models.UniqueConstraint(fields=["version", "position"], name="journey_step_unique_position"),
            models.CheckConstraint(
                condition=~Q(kind="send") | Q(campaign__isnull=False), name="journey_step_send_has_content"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.version} step {self.position}"


class ExitReason(models.TextChoices):
    COMPLETED = "completed", _("Completed every step")
    EXIT_STEP = "exit_step", _("Reached an exit step")
    CONVERTED = "converted", _("Converted")
    REVOKED = "revoked", _("Authorization revoked")
    NOT_COVERED = "not_covered", _("No longer covered")
    STOPPED = "stopped", _("Journey stopped")
    CONTROL_ENDED = "control_ended", _("Hold-out period ended")


class Enrolment(models.Model):
    """A patient's way through one version of a journey. `step_position` is the step it is at; `due_at` when the
    scanner next looks at it (the indexed scan); `step_started_at` when it arrived at a wait or branch step
    that is still waiting (None: not yet started). Held-out (control) enrolments get no step: they only wait
    for the conversion event or the end of the conversion period."""

    class Status(models.TextChoices):
        ACTIVE = "active", pgettext_lazy("enrolment status", "In the journey")
        ENDED = "ended", pgettext_lazy("enrolment status", "Ended")

    # journey and patient lead the unique (journey, trigger_key) and the index (patient, journey): no index of
    # their own (the scanner updates every enrolment it moves, and each index is one more write).
    journey = models.ForeignKey(Journey, on_delete=models.PROTECT, related_name="enrolments", db_index=False)
    version = models.ForeignKey(JourneyVersion, on_delete=models.PROTECT, related_name="enrolments")
    patient = models.ForeignKey(
        Patient, on_delete=models.PROTECT, related_name="journey_enrolments", db_index=False
    )
    # What enrolled the patient, once per journey: "event:<id>", "date:<field>:<patient>:<date>",
    # "segment:<segment>:<patient>", "expiry:<authorization>". The same event delivered twice enrols once.
    trigger_key = models.CharField(max_length=100)
    # 1 for the patient's first enrolment in this journey, 2 for the next: the delivery's `sequence`.
    sequence = models.PositiveIntegerField(default=1)
    control = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    step_position = models.PositiveSmallIntegerField(default=1)
    step_started_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField()
    # Why the current step waits beyond its own time (quiet hours), for the screens.
    held_reason = models.CharField(max_length=20, blank=True)
    entered_at = models.DateTimeField(db_default=models.functions.Now())
    ended_at = models.DateTimeField(null=True, blank=True)
    exit_reason = models.CharField(max_length=20, choices=ExitReason.choices, blank=True)
    converted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["journey", "trigger_key"], name="enrolment_once_per_trigger"),
            models.UniqueConstraint(
                fields=["journey", "patient"], condition=Q(status="active"), name="enrolment_one_running_per_patient"
            ),
            models.UniqueConstraint(fields=["journey", "patient", "sequence"], name="enrolment_unique_sequence"),
            models.CheckConstraint(
                condition=Q(status="active", ended_at__isnull=True, exit_reason="")
                | Q(status="ended", ended_at__isnull=False) & ~Q(exit_reason=""),
                name="enrolment_ended_has_reason",
            ),
        ]
        indexes = [
            # The scanner's only question: which running enrolments are due, oldest first.
            models.Index(fields=["due_at"], condition=Q(status="active"), name="enrolment_due"),
            models.Index(fields=["patient", "journey"], name="enrolment_by_patient"),
        ]

    def __str__(self) -> str:
        return f"Enrolment #{self.pk}"


class StepOutcome(models.TextChoices):
    QUEUED = "queued", _("Message queued for the sender")
    BLOCKED = "blocked", _("Not sent: not covered")
    DROPPED = "dropped", _("Not sent: frequency cap")
    HELD = "held", _("Held: quiet hours")
    WAITED = "waited", _("Waited")
    BRANCH_YES = "branch_yes", _("Branch: it happened")
    BRANCH_NO = "branch_no", _("Branch: it did not happen")
    EXITED = "exited", _("Exited")


class StepRun(models.Model):
    """What happened at one step of one enrolment (the evidence beside the delivery): a message queued (the
    delivery then records sent or blocked at the moment of sending), a message not sent and why, a hold, a wait
    served, a branch taken, an exit."""

    enrolment = models.ForeignKey(Enrolment, on_delete=models.PROTECT, related_name="step_runs")
    # (step, outcome) below leads with it.
    step = models.ForeignKey(
        JourneyStep, null=True, blank=True, on_delete=models.PROTECT, related_name="runs", db_index=False
    )
    outcome = models.CharField(max_length=12, choices=StepOutcome.choices)
    reason = models.CharField(max_length=32, blank=True)
    delivery = models.OneToOneField(
        Delivery, null=True, blank=True, on_delete=models.PROTECT, related_name="journey_step_run"
    )
    at = models.DateTimeField(db_default=models.functions.Now())

    class Meta:
        indexes = [models.Index(fields=["step", "outcome"], name="step_run_by_step")]

    def __str__(self) -> str:
        return f"Step run #{self.pk}"
