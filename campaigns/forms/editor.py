"""Campaign editor and wizard forms: input shape only. The rules live in campaigns.services.lifecycle,
campaigns.services.drafts and campaigns.content."""

from django import forms
from django.utils.translation import gettext_lazy as _

from campaigns.content import MAX_BLOCKS, block_allowed_for, content_blocks_allowed
from campaigns.models import Campaign, ContentBlock, ContentStatus, EmailTemplate, Segment
from consent.models import Purpose

NOT_APPROVED = _("That one is not an approved item of the content library (any more): choose another.")
NOT_FOR_PURPOSE = _("That block is not approved for the campaign\u2019s purpose: choose another, or none.")
NOT_OFFERED = _(
    "That block is not approved for this campaign\u2019s purpose (or no longer approved at all): choose another."
)


class BlockSelect(forms.Select):
    """A block choice whose options say which purposes each block is for (`data-purposes`: purpose ids, or "all"),
    so the one-page editor can offer only the chosen purpose's blocks as the purpose changes
    (static/js/campaign-editor.js); the form checks again on the server."""

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex=subindex, attrs=attrs)
        block = getattr(value, "instance", None)
        if block is not None:
            ids = sorted(purpose.pk for purpose in block.purposes.all())
            option["attrs"]["data-purposes"] = " ".join(str(pk) for pk in ids) or "all"
        return option


def approved_block_fields_add(form: forms.Form, *, purpose_id: int | None = None) -> None:
    """Add `block_1` … `block_<MAX_BLOCKS>`: each an optional choice among the approved content blocks, only those
    for the purpose when `purpose_id` is given. A campaign's form and a journey's send step both use them."""
    if purpose_id is None:
        approved = (
            ContentBlock.objects.filter(status=ContentStatus.APPROVED).prefetch_related("purposes").order_by("name", "id")
        )
    else:
        approved = content_blocks_allowed(purpose_id=purpose_id)
    for position in range(1, MAX_BLOCKS + 1):
        form.fields[f"block_{position}"] = forms.ModelChoiceField(
            queryset=approved,
            required=False,
            empty_label=_("(none)"),
            label=_("Block %(position)s") % {"position": position},
            widget=BlockSelect,
            error_messages={"invalid_choice": NOT_APPROVED if purpose_id is None else NOT_OFFERED},
        )


class CampaignContentForm(forms.Form):
    """A campaign's content: the subject, the template, the marketer's introduction and up to MAX_BLOCKS approved
    blocks in order (one numbered choice each, so the order needs no script). `cleaned_data["blocks"]` is the chosen
    blocks in order, empty choices skipped. With `purpose` (the wizard's content step) only that purpose's blocks are
    offered; a block for another purpose is an error on its choice."""

    subject = forms.CharField(
        max_length=Campaign._meta.get_field("subject").max_length,
        label=_("Subject"),
        help_text=_("No merge fields here: subjects show in inbox lists and notifications."),
        error_messages={"required": _("Write a subject: it is what patients see first in their inbox.")},
    )
    template = forms.ModelChoiceField(
        queryset=EmailTemplate.objects.filter(status=ContentStatus.APPROVED).order_by("name", "id"),
        required=False,
        empty_label=_("Plain layout (no template)"),
        label=_("Email template"),
        error_messages={"invalid_choice": NOT_APPROVED},
    )
    body_text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6}),
        required=False,
        label=_("Introduction"),
        help_text=_("Your own words above the blocks, as plain text. A blank line starts a new paragraph."),
    )

    def __init__(self, *args, purpose: Purpose | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.purpose = purpose
        approved_block_fields_add(self, purpose_id=purpose.pk if purpose is not None else None)

    def block_fields(self):
        return [self[f"block_{position}"] for position in range(1, MAX_BLOCKS + 1)]

    def _purpose_chosen(self, cleaned: dict) -> Purpose | None:
        return self.purpose

    def clean(self):
        cleaned = super().clean()
        chosen = [
            (position, block)
            for position in range(1, MAX_BLOCKS + 1)
            if (block := cleaned.pop(f"block_{position}", None))
        ]
        cleaned["blocks"] = [block for _, block in chosen]
        purpose = self._purpose_chosen(cleaned)
        if purpose is not None:
            for position, block in chosen:
                if not block_allowed_for(block, purpose_id=purpose.pk):
                    self.add_error(f"block_{position}", NOT_FOR_PURPOSE)
        return cleaned

    @staticmethod
    def initial_for(campaign: Campaign) -> dict:
        initial = {field: getattr(campaign, field) for field in ("name", "purpose", "segment", "subject", "body_text")}
        initial["template"] = campaign.template_id
        for use in campaign.content_blocks.order_by("position")[:MAX_BLOCKS]:
            initial[f"block_{use.position + 1}"] = use.block_id
        return initial


class CampaignForm(CampaignContentForm):
    """The whole campaign on one page (the one-page editor): its name, purpose and audience, and its content. The
    purpose is chosen on the page, so each block's options carry their purposes for the page's script."""

    name = forms.CharField(max_length=Campaign._meta.get_field("name").max_length, label=_("Campaign name"))
    purpose = forms.ModelChoiceField(
        queryset=Purpose.objects.order_by("name"),
        label=_("Purpose"),
        help_text=_("Only patients whose signed authorization covers this purpose receive the message."),
    )
    segment = forms.ModelChoiceField(
        queryset=Segment.objects.order_by("name", "id"),
        required=False,
        empty_label=_("Every patient (no segment)"),
        label=_("Segment"),
    )

    field_order = ["name", "purpose", "segment", "subject", "template", "body_text"]

    def _purpose_chosen(self, cleaned: dict) -> Purpose | None:
        return cleaned.get("purpose")


# --- The wizard's own steps -----------------------------------------------------------------------------------


class WizardPurposeForm(forms.Form):
    """Step 1: what the campaign is for, and what it is called. The purpose decides who may receive it (the
    authorizations that cover it) and which blocks and merge fields it may use."""

    purpose = forms.ModelChoiceField(
        queryset=Purpose.objects.order_by("name"),
        widget=forms.RadioSelect,
        label=_("Purpose"),
        empty_label=None,
        error_messages={"required": _("Choose what the campaign is for.")},
    )
    name = forms.CharField(
        max_length=Campaign._meta.get_field("name").max_length,
        label=_("Campaign name"),
        help_text=_("For you and your team; patients never see it. The subject starts as this name: change it at the content step."),
        error_messages={"required": _("Give the campaign a name, for example \u201cSpring CPAP refresh\u201d.")},
    )


class WizardAudienceForm(forms.Form):
    """Step 2: a saved segment, or every patient ("" in `segment`)."""

    EVERY_PATIENT = "every"

    segment = forms.CharField(
        required=True,
        error_messages={"required": _("Choose who the campaign is for: a segment, or every patient.")},
    )

    def clean_segment(self) -> Segment | None:
        value = self.cleaned_data["segment"]
        if value == self.EVERY_PATIENT:
            return None
        segment = Segment.objects.filter(pk=int(value)).first() if value.isdigit() else None
        if segment is None:
            raise forms.ValidationError(_("That segment does not exist (any more): choose another."))
        return segment
