"""Campaign editor forms: input shape only. The rules live in campaigns.services.lifecycle and campaigns.content."""

from django import forms

from campaigns.content import MAX_BLOCKS
from campaigns.models import Campaign, ContentBlock, ContentStatus, EmailTemplate, Segment
from consent.models import Purpose

NOT_APPROVED = "That one is not an approved item of the content library (any more): choose another."


def approved_block_fields_add(form: forms.Form) -> None:
    """Add `block_1` … `block_<MAX_BLOCKS>`: each an optional choice among the approved content blocks. A campaign's
    form and a journey's send step both use them."""
    approved = ContentBlock.objects.filter(status=ContentStatus.APPROVED).order_by("name", "id")
    for position in range(1, MAX_BLOCKS + 1):
        form.fields[f"block_{position}"] = forms.ModelChoiceField(
            queryset=approved,
            required=False,
            empty_label="(none)",
            label=f"Block {position}",
            error_messages={"invalid_choice": NOT_APPROVED},
        )


class CampaignForm(forms.Form):
    """The campaign and its content: the template, the marketer's introduction and up to MAX_BLOCKS approved
    blocks in order (one numbered choice each, so the order needs no script). `cleaned_data["blocks"]` is the
    chosen blocks in order, empty choices skipped."""

    name = forms.CharField(max_length=Campaign._meta.get_field("name").max_length, label="Campaign name")
    purpose = forms.ModelChoiceField(
        queryset=Purpose.objects.order_by("name"),
        label="Purpose",
        help_text="Only patients whose signed authorization covers this purpose receive the message.",
    )
    segment = forms.ModelChoiceField(
        queryset=Segment.objects.order_by("name", "id"),
        required=False,
        empty_label="Every patient (no segment)",
        label="Segment",
    )
    subject = forms.CharField(
        max_length=Campaign._meta.get_field("subject").max_length,
        label="Subject",
        help_text="No merge fields here: subjects show in inbox lists and notifications.",
    )
    template = forms.ModelChoiceField(
        queryset=EmailTemplate.objects.filter(status=ContentStatus.APPROVED).order_by("name", "id"),
        required=False,
        empty_label="Plain layout (no template)",
        label="Email template",
        error_messages={"invalid_choice": NOT_APPROVED},
    )
    body_text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6}),
        required=False,
        label="Introduction",
        help_text="Your own words above the blocks, as plain text. A blank line starts a new paragraph.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        approved_block_fields_add(self)

    def block_fields(self):
        return [self[f"block_{position}"] for position in range(1, MAX_BLOCKS + 1)]

    def clean(self):
        cleaned = super().clean()
        cleaned["blocks"] = [
            block for position in range(1, MAX_BLOCKS + 1) if (block := cleaned.pop(f"block_{position}", None))
        ]
        return cleaned

    @staticmethod
    def initial_for(campaign: Campaign) -> dict:
        initial = {field: getattr(campaign, field) for field in ("name", "purpose", "segment", "subject", "body_text")}
        initial["template"] = campaign.template_id
        for use in campaign.content_blocks.order_by("position")[:MAX_BLOCKS]:
            initial[f"block_{use.position + 1}"] = use.block_id
        return initial
