"""The journey builder (issue 14, item 6): a journey's trigger, re-entry rule, goal and hold-out, and its steps as a
vertical flow of cards to add, remove and reorder. Thin: journeys.services.journeys writes (one durable transaction,
so nothing is ever half saved) and journeys.validation says what is wrong; this page shapes input and shows results.

It works without script. Every button is a submit button of the one form: "Save" saves; "Add a message", "Move up",
"Remove" and the like (name="builder") re-draw the page from what was posted, saving nothing. With script
(static/journeys/journey-builder.js) steps are added in the page and each message's preview is redrawn as it is
typed, by the campaign editor's own preview endpoint (campaigns:campaign_preview), so journeys and campaigns are
previewed and scope-checked by the same code (campaigns.content_preview).
"""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from campaigns.content import CampaignContent
from campaigns.content_preview import content_preview_build
from consent.models import Purpose
from journeys import permissions
from journeys.forms.builder import (
    TARGET_NEXT,
    JourneyForm,
    StepForm,
    StepFormSet,
    step_templates,
    steps_targets_set,
)
from journeys.models import Journey, JourneyVersion, StepKind
from journeys.selectors.flow import journey_step_list
from journeys.services.journeys import journey_create, journey_version_open, journey_version_save
from journeys.validation import MAX_STEPS, version_problems

PREFIX = "steps"
_TARGETS = ("yes_target", "no_target", "next_target")


def _formset(data=None, *, initial=None) -> StepFormSet:
    # Every posted step is read in full: a step added by the script is not an optional "extra" form.
    return StepFormSet(data, prefix=PREFIX, initial=initial, form_kwargs={"empty_permitted": False})


def _step_values(formset) -> list[dict]:
    """What was posted for each step, as initial values for the page drawn again."""
    return [{name: form[name].value() for name in form.fields} for form in formset.forms]


def _rearranged(steps: list[dict], action: str) -> tuple[list[dict], str]:
    """Apply a builder button ("add:send", "up:2", "down:0", "remove:1"; numbers are the step's index) and keep
    each "go to step N" pointing at the same step. Returns the steps and a note for the page (or "")."""
    verb, _colon, argument = action.partition(":")
    order = list(range(len(steps)))
    note = ""
    if verb == "add" and argument in StepKind.values:
        if len(steps) >= MAX_STEPS:
            return steps, _("A journey has at most %(count)s steps.") % {"count": MAX_STEPS}
        return [*steps, {"kind": argument}], ""
    if not argument.isdigit() or int(argument) >= len(steps):
        return steps, ""
    index = int(argument)
    if verb == "up" and index > 0:
        order[index - 1], order[index] = order[index], order[index - 1]
    elif verb == "down" and index < len(steps) - 1:
        order[index + 1], order[index] = order[index], order[index + 1]
    elif verb == "remove":
        order.pop(index)
    else:
        return steps, ""
    new_position = {old + 1: new + 1 for new, old in enumerate(order)}
    rearranged = []
    for old in order:
        step = dict(steps[old])
        for name in _TARGETS:
            value = str(step.get(name) or TARGET_NEXT)
            if value.isdigit():
                if int(value) in new_position:
                    step[name] = str(new_position[int(value)])
                else:
                    step[name] = TARGET_NEXT
                    note = _("A step that went to the removed step now goes to the next step: check the flow.")
        rearranged.append(step)
    return rearranged, note


def _bound_copy(form: StepForm) -> StepForm:
    """A step drawn from initial values, bound, so that its preview is made exactly as a posted one's."""
    data = {form.add_prefix(name): value for name, value in form.initial.items() if value not in (None, "")}
    copy = StepForm(data, prefix=form.prefix)
    copy.is_valid()
    return copy


def _step_preview(form: StepForm, purpose: Purpose | None):
    """The message as the synthetic patient would receive it (campaigns.content_preview, as the campaign editor)."""
    bound = form if form.is_bound else _bound_copy(form)
    if not hasattr(bound, "cleaned_data"):
        bound.is_valid()
    data = bound.cleaned_data
    content = CampaignContent(
        purpose=purpose or Purpose(name=_("(no purpose chosen yet)")),
        subject=data.get("subject") or "",
        intro_text=data.get("body_text") or "",
        template=data.get("template"),
        blocks=tuple(data.get("blocks") or ()),
    )
    return content_preview_build(content=content)


def _shape_problems(journey_form: JourneyForm, formset) -> list[str]:
    """Every field that could not be read, named by its label (and its step)."""
    problems = []
    for name, errors in journey_form.errors.items():
        label = journey_form.fields[name].label if name in journey_form.fields else ""
        problems += [_("%(label)s: %(problem)s") % {"label": label, "problem": error} if label else error
                     for error in errors]
    problems += list(formset.non_form_errors())
    for position, form in enumerate(formset.forms, start=1):
        for name, errors in form.errors.items():
            label = form.fields[name].label if name in form.fields else ""
            for error in errors:
                problem = _("%(label)s: %(problem)s") % {"label": label, "problem": error} if label else error
                problems.append(_("Step %(position)s: %(problem)s") % {"position": position, "problem": problem})
    return problems


_KIND_LABELS = dict(StepKind.choices)


def _card(form: StepForm, *, index, position, preview) -> dict:
    kind = form.kind_value
    return {
        "form": form,
        "index": index,
        "position": position,
        "kind": kind,
        "kind_label": _KIND_LABELS.get(kind, _("Step")),
        "preview": preview,
        "preview_title": _("Step %(position)s: email preview (HTML part)") % {"position": position},
    }


class _Page:
    """One drawing of the builder: the forms, each step's card and preview, the problems at the top."""

    def __init__(self, *, journey_form, formset, purpose, journey=None, editable=True):
        self.journey_form = journey_form
        self.formset = formset
        self.purpose = purpose
        self.journey = journey
        self.editable = editable
        self.problems: list[str] = []
        self.note = ""

    def context(self, request) -> dict:
        forms_ = list(self.formset.forms)
        count = len(forms_)
        steps_targets_set(forms_, count)
        cards = []
        for index, form in enumerate(forms_):
            preview = _step_preview(form, self.purpose) if form.kind_value == StepKind.SEND else None
            cards.append(_card(form, index=index, position=index + 1, preview=preview))
        template_cards = [
            _card(form, index="__prefix__", position="__number__", preview=None)
            for form in step_templates(self.formset, count).values()
        ]
        if not self.editable:
            for form in [self.journey_form, *forms_]:
                for field in form.fields.values():
                    field.disabled = True
        open_version = journey_version_open(self.journey) if self.journey else None
        return {
            "journey": self.journey,
            "journey_form": self.journey_form,
            "formset": self.formset,
            "cards": cards,
            "template_cards": template_cards,
            "kinds": StepKind.choices,
            "problems": self.problems,
            "note": self.note,
            "editable": self.editable,
            "purpose": self.purpose,
            "open_version": open_version,
            "max_steps": MAX_STEPS,
        }


def _purpose_of(journey_form: JourneyForm, journey: Journey | None) -> Purpose | None:
    if journey is not None:
        return journey.purpose
    if not hasattr(journey_form, "cleaned_data"):
        journey_form.is_valid()
    return journey_form.cleaned_data.get("purpose")


def _posted(request, journey: Journey | None):
    """Handle a POST: a builder button redraws; "save" validates everything, then saves through the service.
    Returns a response (saved: a redirect) or the page to draw again."""
    journey_form = JourneyForm(request.POST, with_purpose=journey is None)
    formset = _formset(request.POST)
    action = request.POST.get("builder", "save")
    if action != "save":
        steps, note = _rearranged(_step_values(formset), action)
        journey_form.is_valid()
        # Drawn again from what was posted, without error messages: nothing was saved, nothing was judged.
        redrawn = JourneyForm(initial={n: journey_form[n].value() for n in journey_form.fields},
                              with_purpose=journey is None)
        page = _Page(journey_form=redrawn, formset=_formset(initial=steps),
                     purpose=_purpose_of(journey_form, journey), journey=journey)
        page.note = note
        return page
    forms_valid = journey_form.is_valid() & formset.is_valid()
    purpose = _purpose_of(journey_form, journey)
    page = _Page(journey_form=journey_form, formset=formset, purpose=purpose, journey=journey)
    problems = _shape_problems(journey_form, formset)
    count = len(formset.forms)
    steps = [form.step_spec(count=count) for form in formset.forms]
    trigger = journey_form.trigger_spec()
    judged = purpose or Purpose(name=_("the purpose"), tracking_enabled=True)  # no purpose yet: said above
    problems += [p for p in version_problems(purpose=judged, trigger=trigger, steps=steps) if p not in problems]
    for position, form in enumerate(formset.forms, start=1):
        if form.kind_value == StepKind.SEND:
            problems += [_("Step %(position)s: %(problem)s") % {"position": position, "problem": error}
                         for error in _step_preview(form, purpose).errors]
    if forms_valid and not problems:
        try:
            if journey is None:
                created = journey_create(
                    actor=request.user,
                    name=journey_form.cleaned_data["name"],
                    purpose=purpose,
                    trigger=trigger,
                    steps=steps,
                )
                messages.success(request, _("Draft saved. Submit it for review when it is ready."))
                return redirect("journeys:detail", journey_id=created.pk)
            live = journey.live_version
            version = journey_version_save(
                actor=request.user, journey_id=journey.pk, name=journey_form.cleaned_data["name"],
                trigger=trigger, steps=steps,
            )
            if live is not None and version.pk != live.pk:
                messages.success(request, _(
                    "Saved as version %(number)s, a draft. Version %(live)s stays live until this one is approved."
                ) % {"number": version.number, "live": live.number})
            else:
                messages.success(request, _("Saved. Submit it for review when it is ready."))
            return redirect("journeys:detail", journey_id=journey.pk)
        except ValidationError as error:
            problems += error.messages
    page.problems = problems or [_("Correct the fields marked below.")]
    return page


@require_http_methods(["GET", "HEAD", "POST"])
def journey_new(request):
    permissions.access_journeys(request.user)
    if request.method == "POST":
        page = _posted(request, None)
        if not isinstance(page, _Page):
            return page
    else:
        page = _Page(journey_form=JourneyForm(), formset=_formset(initial=[{"kind": StepKind.SEND}]), purpose=None)
    return render(request, "journeys/builder.html", page.context(request))


def _source_version(journey: Journey) -> JourneyVersion | None:
    """What the builder starts from: the version being written, else the live one, else the latest."""
    return journey_version_open(journey) or journey.live_version or journey.versions.order_by("-number").first()


@require_http_methods(["GET", "HEAD", "POST"])
def journey_edit(request, journey_id: int):
    journey = permissions.access_journey_by_id(request.user, journey_id)
    open_version = journey_version_open(journey)
    editable = journey.status != Journey.Status.STOPPED and not (
        open_version is not None and open_version.status == JourneyVersion.Status.SUBMITTED
    )
    if request.method == "POST" and editable:
        page = _posted(request, journey)
        if not isinstance(page, _Page):
            return page
    else:
        version = _source_version(journey)
        steps = journey_step_list(version_id=version.pk) if version else []
        page = _Page(
            journey_form=JourneyForm(initial=JourneyForm.initial_for(journey, version), with_purpose=False)
            if version
            else JourneyForm(initial={"name": journey.name}, with_purpose=False),
            formset=_formset(initial=[StepForm.initial_for(step, count=len(steps)) for step in steps]),
            purpose=journey.purpose,
            journey=journey,
            editable=editable,
        )
        if request.method == "POST":
            page.problems = [_("This version cannot be changed now: nothing was saved.")]
    return render(request, "journeys/builder.html", page.context(request))
