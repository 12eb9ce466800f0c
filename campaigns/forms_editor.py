"""Campaign editor forms: input shape only. The rules live in campaigns.services_review."""
from django import forms

from campaigns.models import Campaign, Segment
from consent.models import Purpose


class CampaignForm(forms.Form):
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
    subject = forms.CharField(max_length=Campaign._meta.get_field("subject").max_length, label="Subject")
    body_text = forms.CharField(widget=forms.Textarea(attrs={"rows": 12}), label="Message text")
