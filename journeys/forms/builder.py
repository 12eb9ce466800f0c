"""The journey builder's forms: input shape only (types, ranges, choices from the vocabularies). What a journey must
be is journeys.validation.version_problems' to say, and the services check again; these forms only turn what was
typed into a TriggerSpec and StepSpecs.

The steps are a Django formset (prefix "steps"), one form per step in order. A step's kind is fixed when it is added
(a hidden field), so a card shows only its own fields. Where a step goes next is a choice: "" (the following step),
"end" (past the last step: the journey is complete) or a step number; "end" stays "end" when steps are added.
"""
from __future__ import annotations

from django import forms
from django.forms import formset_factory
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from campaigns.content import MAX_BLOCKS
from campaigns.forms.editor import NOT_APPROVED, approved_block_fields_add
from campaigns.models import Campaign, ContentStatus, EmailTemplate, Segment
from consent.events import ATTRIBUTES, EVENT_TYPES, AttributeKind
from consent.models import AuthorizationForm, Purpose
from journeys.dates import DATE_FIELDS
from journeys.models import Journey, Reentry, StepKind, Trigger
from journeys.services.journeys import StepSpec
from journeys.validation import MAX_OFFSET_DAYS, MAX_STEPS, TriggerSpec

TARGET_NEXT = ""
TARGET_END = "end"
TRIGGER_CONDITIONS = 2  # coded conditions on the trigger event's attributes
BRANCH_CONDITIONS = 1
_WHOLE = _("Enter a whole number.")


def _events(empty: str) -> list[tuple[str, str]]:
    return [("", empty)] + [(code, event_type.label) for code, event_type in EVENT_TYPES.items()]


def _attributes() -> list[tuple[str, str]]:
    return [("", gettext("(no condition)"))] + [(name, attribute.label) for name, attribute in ATTRIBUTES.items()]


def _number(label: str, *, minimum: int, maximum: int, initial: int | None = None, help_text: str = ""):
    return forms.IntegerField(
        label=label,
        min_value=minimum,
        max_value=maximum,
        required=False,
        initial=initial,
        help_text=help_text,
        error_messages={"invalid": _WHOLE},
        widget=forms.NumberInput(attrs={"min": minimum, "max": maximum, "inputmode": "numeric"}),
    )


def purposes_with_published_form():
    """A journey's messages need merge fields and coverage from a published authorization form."""
    published = AuthorizationForm.objects.filter(status=AuthorizationForm.Status.PUBLISHED).values("purpose_id")
    return Purpose.objects.filter(pk__in=published).order_by("name", "id")


def _condition_value(attribute: str, value: str):
    """A coded value as the event's attributes hold it (integers as numbers), for journeys.validation to judge."""
    known = ATTRIBUTES.get(attribute)
    if known is not None and known.kind == AttributeKind.INTEGER:
        try:
            return int(value)
        except ValueError:
            return value
    return value


class _Conditions:
    """Numbered (attribute, value) pairs; `conditions(cleaned, stem, count)` is the dict, pairs with no attribute
    left out. A pair that is half filled in, or an attribute named twice, is an error on the value field."""

    @staticmethod
    def add_fields(form: forms.Form, stem: str, count: int) -> None:
        for index in range(1, count + 1):
            numbered = {"number": index}
            form.fields[f"{stem}_{index}_attribute"] = forms.ChoiceField(
                choices=_attributes(), required=False,
                label=gettext("Condition %(number)s: attribute") % numbered if count > 1
                else gettext("Condition: attribute"),
            )
            form.fields[f"{stem}_{index}_value"] = forms.CharField(
                max_length=40, required=False,
                label=gettext("Condition %(number)s: code") % numbered if count > 1 else gettext("Condition: code"),
                help_text=gettext("The code exactly as the EHR sends it, for example CPAP.") if index == 1 else "",
            )

    @staticmethod
    def clean_pairs(form: forms.Form, cleaned: dict, stem: str, count: int) -> dict:
        conditions = {}
        for index in range(1, count + 1):
            attribute = cleaned.get(f"{stem}_{index}_attribute") or ""
            value = (cleaned.get(f"{stem}_{index}_value") or "").strip()
            if attribute and not value:
                form.add_error(
                    f"{stem}_{index}_value",
                    gettext("Give the %(attribute)s code to match.")
                    % {"attribute": ATTRIBUTES[attribute].label.lower()},
                )
            elif value and not attribute:
                form.add_error(f"{stem}_{index}_attribute", gettext("Choose which attribute the code is for."))
            elif attribute in conditions:
                form.add_error(
                    f"{stem}_{index}_attribute",
                    gettext("%(attribute)s is already a condition.") % {"attribute": ATTRIBUTES[attribute].label},
                )
            elif attribute:
                conditions[attribute] = _condition_value(attribute, value)
        return conditions


class JourneyForm(forms.Form):
    """The journey, its trigger, re-entry rule, goal and hold-out. `purpose` only for a new journey."""

    name = forms.CharField(
        max_length=Journey._meta.get_field("name").max_length,
        label=_("Journey name"),
        error_messages={"required": _("Give the journey a name.")},
    )
    purpose = forms.ModelChoiceField(
        queryset=Purpose.objects.none(),
        label=_("Purpose"),
        help_text=_("Only patients whose signed authorization covers this purpose receive its messages. Purposes "
        "without a published authorization form are not listed."),
        error_messages={
            "required": _("Choose the journey's purpose."),
            "invalid_choice": _("Choose a purpose from the list."),
        },
    )
    trigger = forms.ChoiceField(
        choices=Trigger.choices,
        widget=forms.RadioSelect,
        label=_("Choose one"),
        initial=Trigger.EVENT,
        error_messages={"required": _("Choose what starts the journey.")},
    )
    event_type = forms.ChoiceField(choices=_events(_("Choose a care event")), required=False, label=_("Care event"))
    date_field = forms.ChoiceField(
        choices=[("", _("Choose a date"))] + [(name, field.label) for name, field in DATE_FIELDS.items()],
        required=False,
        label=_("Date on the patient's record"),
    )
    offset_days = _number(_("Days"), minimum=0, maximum=MAX_OFFSET_DAYS, initial=0)
    offset_direction = forms.ChoiceField(
        choices=[("before", _("before the date")), ("after", _("after the date"))],
        required=False,
        initial="before",
        label=_("Before or after"),
    )
    segment = forms.ModelChoiceField(
        queryset=Segment.objects.order_by("name", "id"),
        required=False,
        empty_label=_("Choose a segment"),
        label=_("Segment"),
        error_messages={"invalid_choice": _("Choose a segment from the list.")},
    )
    days_before_expiry = _number(_("Days before the authorization expires"), minimum=1, maximum=365, initial=30)
    reentry = forms.ChoiceField(
        choices=Reentry.choices, initial=Reentry.AFTER_EXIT, label=_("May a patient enter again?")
    )
    reentry_days = _number(
        _("Days after the previous enrolment began"), minimum=0, maximum=3650, initial=0,
        help_text=_("Only for “again, some days after the previous enrolment began”."),
    )
    conversion_event_type = forms.ChoiceField(
        choices=_events(_("No goal")), required=False, label=_("Goal: the care event that counts as converting")
    )
    conversion_days = _number(_("Within how many days of entering"), minimum=1, maximum=365, initial=30)
    holdout_percent = _number(
        _("Hold-out (control group), in percent"), minimum=0, maximum=50, initial=0,
        help_text=_("A random share of patients who enter but are sent nothing, to compare conversion against. "
        "0 to 50; it needs a goal."),
    )

    def __init__(self, *args, with_purpose: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        _Conditions.add_fields(self, "condition", TRIGGER_CONDITIONS)
        if with_purpose:
            self.fields["purpose"].queryset = purposes_with_published_form()
        else:
            del self.fields["purpose"]

    def condition_fields(self):
        return [
            (self[f"condition_{index}_attribute"], self[f"condition_{index}_value"])
            for index in range(1, TRIGGER_CONDITIONS + 1)
        ]

    def clean(self):
        cleaned = super().clean()
        cleaned["event_conditions"] = _Conditions.clean_pairs(self, cleaned, "condition", TRIGGER_CONDITIONS)
        return cleaned

    def trigger_spec(self) -> TriggerSpec:
        """The trigger from what is valid so far (an invalid field counts as left empty)."""
        data = getattr(self, "cleaned_data", {})

        def number(name: str, default: int) -> int:
            value = data.get(name)
            return default if value is None else value

        offset = number("offset_days", 0)
        return TriggerSpec(
            kind=data.get("trigger") or "",
            event_type=data.get("event_type") or "",
            event_conditions=data.get("event_conditions") or {},
            date_field=data.get("date_field") or "",
            offset_days=-offset if data.get("offset_direction", "before") != "after" else offset,
            segment=data.get("segment"),
            days_before_expiry=number("days_before_expiry", 30),
            reentry=data.get("reentry") or Reentry.AFTER_EXIT,
            reentry_days=number("reentry_days", 0),
            conversion_event_type=data.get("conversion_event_type") or "",
            conversion_days=number("conversion_days", 30),
            holdout_percent=number("holdout_percent", 0),
        )

    @staticmethod
    def initial_for(journey: Journey, version) -> dict:
        conditions = list((version.event_conditions or {}).items())
        initial = {
            "name": journey.name,
            "trigger": version.trigger,
            "event_type": version.event_type,
            "date_field": version.date_field,
            "offset_days": abs(version.offset_days),
            "offset_direction": "after" if version.offset_days > 0 else "before",
            "segment": version.segment_id,
            "days_before_expiry": version.days_before_expiry,
            "reentry": version.reentry,
            "reentry_days": version.reentry_days,
            "conversion_event_type": version.conversion_event_type,
            "conversion_days": version.conversion_days,
            "holdout_percent": version.holdout_percent,
        }
        for index, (attribute, value) in enumerate(conditions[:TRIGGER_CONDITIONS], start=1):
            initial[f"condition_{index}_attribute"] = attribute
            initial[f"condition_{index}_value"] = str(value)
        return initial


class TargetSelect(forms.Select):
    """Where a step goes next; its options are set for the number of steps (`steps_targets_set`)."""


def _target_field(label: str) -> forms.CharField:
    return forms.CharField(required=False, label=label, widget=TargetSelect(), initial=TARGET_NEXT)


class StepForm(forms.Form):
    """One step. Only the fields of its kind are shown and read."""

    kind = forms.ChoiceField(choices=StepKind.choices, widget=forms.HiddenInput)
    # SEND: the message, as the campaign editor writes it.
    subject = forms.CharField(
        max_length=Campaign._meta.get_field("subject").max_length,
        required=False,
        label=_("Subject"),
        help_text=_("No merge fields here: subjects show in inbox lists and notifications."),
    )
    body_text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5}),
        required=False,
        label=_("Introduction"),
        help_text=_("Your own words above the blocks, as plain text, with merge fields such as {{ first_name }}."),
    )
    template = forms.ModelChoiceField(
        queryset=EmailTemplate.objects.filter(status=ContentStatus.APPROVED).order_by("name", "id"),
        required=False,
        empty_label=_("Plain layout (no template)"),
        label=_("Email template"),
        error_messages={"invalid_choice": NOT_APPROVED},
    )
    # WAIT: a duration, then optionally a time of day. BRANCH: how long to wait for it to happen.
    wait_days = _number(_("Days"), minimum=0, maximum=365, initial=0)
    wait_hours = _number(_("Hours"), minimum=0, maximum=23, initial=0)
    until_local_time = forms.TimeField(
        required=False,
        label=_("Then until this time of day (optional)"),
        help_text=_("In the patient's own time zone, for example 10:00."),
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        error_messages={"invalid": _("Enter a time of day as HH:MM, for example 10:00.")},
    )
    branch_on = forms.ChoiceField(
        choices=[("event", _("A care event happens")), ("click", _("The patient clicks a link in a message"))],
        widget=forms.RadioSelect,
        required=False,
        initial="event",
        label=_("The branch waits for"),
    )
    branch_event_type = forms.ChoiceField(
        choices=_events(_("Choose a care event")), required=False, label=_("Care event")
    )
    branch_days = _number(_("Within how many days"), minimum=1, maximum=365, initial=7)
    yes_target = _target_field(_("If it happened, go to"))
    no_target = _target_field(_("If it did not, go to"))
    next_target = _target_field(_("After this step, go to"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        approved_block_fields_add(self)
        _Conditions.add_fields(self, "branch_condition", BRANCH_CONDITIONS)

    def block_fields(self):
        return [self[f"block_{position}"] for position in range(1, MAX_BLOCKS + 1)]

    def visible_blocks(self) -> int:
        """Block choices shown without script: those filled in, and one more."""
        filled = [position for position, bound in enumerate(self.block_fields(), start=1) if bound.value()]
        return min(MAX_BLOCKS, (max(filled) if filled else 0) + 1)

    def branch_condition_fields(self):
        return [
            (self[f"branch_condition_{index}_attribute"], self[f"branch_condition_{index}_value"])
            for index in range(1, BRANCH_CONDITIONS + 1)
        ]

    @property
    def kind_value(self) -> str:
        return str(self["kind"].value() or "")

    def _clean_target(self, name: str) -> str:
        value = (self.cleaned_data.get(name) or "").strip()
        if value in (TARGET_NEXT, TARGET_END) or (value.isdigit() and 1 <= int(value) <= MAX_STEPS):
            return value
        raise forms.ValidationError(gettext("Choose a step from the list."))

    def clean_yes_target(self):
        return self._clean_target("yes_target")

    def clean_no_target(self):
        return self._clean_target("no_target")

    def clean_next_target(self):
        return self._clean_target("next_target")

    def clean(self):
        cleaned = super().clean()
        cleaned["blocks"] = [
            block for position in range(1, MAX_BLOCKS + 1) if (block := cleaned.pop(f"block_{position}", None))
        ]
        cleaned["branch_event_conditions"] = _Conditions.clean_pairs(
            self, cleaned, "branch_condition", BRANCH_CONDITIONS
        )
        return cleaned

    def step_spec(self, *, count: int) -> StepSpec:
        """The step from what is valid so far; targets as positions ("end": past the last of `count` steps)."""
        data = getattr(self, "cleaned_data", {})
        kind = data.get("kind") or self.kind_value

        def target(name: str) -> int | None:
            value = data.get(name) or TARGET_NEXT
            if value == TARGET_NEXT:
                return None
            return count + 1 if value == TARGET_END else int(value)

        def number(name: str) -> int:
            return data.get(name) or 0

        if kind == StepKind.SEND:
            return StepSpec(
                kind=kind,
                subject=data.get("subject") or "",
                body_text=data.get("body_text") or "",
                template=data.get("template"),
                blocks=tuple(data.get("blocks") or ()),
                next_position=target("next_target"),
            )
        if kind == StepKind.WAIT:
            return StepSpec(
                kind=kind,
                wait_minutes=number("wait_days") * 1440 + number("wait_hours") * 60,
                until_local_time=data.get("until_local_time"),
                next_position=target("next_target"),
            )
        if kind == StepKind.BRANCH:
            on_click = data.get("branch_on") == "click"
            days = data.get("branch_days")
            return StepSpec(
                kind=kind,
                wait_minutes=(days or 0) * 1440,
                branch_event_type="" if on_click else data.get("branch_event_type") or "",
                branch_event_conditions={} if on_click else data.get("branch_event_conditions") or {},
                branch_on_click=on_click,
                yes_position=target("yes_target"),
                no_position=target("no_target"),
            )
        return StepSpec(kind=kind or "")

    @staticmethod
    def initial_for(step, *, count: int) -> dict:
        """A saved step (journeys.selectors.flow.journey_step_list) as the form's initial values."""

        def target(position: int | None) -> str:
            if position is None:
                return TARGET_NEXT
            return TARGET_END if position > count else str(position)

        initial: dict = {"kind": step.kind, "next_target": target(step.next_position)}
        if step.kind == StepKind.SEND and step.campaign is not None:
            campaign = step.campaign
            initial |= {"subject": campaign.subject, "body_text": campaign.body_text, "template": campaign.template_id}
            for use in list(campaign.content_blocks.all())[:MAX_BLOCKS]:
                initial[f"block_{use.position + 1}"] = use.block_id
        elif step.kind == StepKind.WAIT:
            initial |= {
                "wait_days": step.wait_minutes // 1440,
                "wait_hours": (step.wait_minutes % 1440) // 60,
                "until_local_time": step.until_local_time.strftime("%H:%M") if step.until_local_time else "",
            }
        elif step.kind == StepKind.BRANCH:
            initial |= {
                "branch_on": "click" if step.branch_on_click else "event",
                "branch_event_type": step.branch_event_type,
                "branch_days": max(1, step.wait_minutes // 1440),
                "yes_target": target(step.yes_position),
                "no_target": target(step.no_position),
            }
            for index, (attribute, value) in enumerate(
                list((step.branch_event_conditions or {}).items())[:BRANCH_CONDITIONS], start=1
            ):
                initial[f"branch_condition_{index}_attribute"] = attribute
                initial[f"branch_condition_{index}_value"] = str(value)
        return initial


StepFormSet = formset_factory(StepForm, extra=0, max_num=MAX_STEPS, absolute_max=MAX_STEPS * 2)


def _target_choices(count: int) -> list[tuple[str, str]]:
    choices = [(TARGET_NEXT, gettext("the next step"))]
    choices += [(str(n), gettext("step %(number)s") % {"number": n}) for n in range(1, count + 1)]
    return [*choices, (TARGET_END, gettext("the end (the journey is complete)"))]


def steps_targets_set(forms_: list[StepForm], count: int) -> None:
    """Give every "go to" choice the steps there are: the following step, each step by number, the end."""
    choices = _target_choices(count)
    for form in forms_:
        for name in ("yes_target", "no_target", "next_target"):
            form.fields[name].widget.choices = choices


def step_templates(formset, count: int) -> dict[str, StepForm]:
    """An empty step of each kind with the prefix "steps-__prefix__", for the page's script to copy when a step is
    added (static/journeys/journey-builder.js)."""
    templates = {
        kind: StepForm(
            prefix=formset.add_prefix("__prefix__"),
            auto_id=formset.auto_id,
            initial={"kind": kind},
            use_required_attribute=False,
        )
        for kind in StepKind.values
    }
    steps_targets_set(list(templates.values()), count)
    return templates
