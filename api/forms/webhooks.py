"""The form an administrator fills to subscribe a receiver to webhooks: input shape only
(api.webhooks.webhook_subscription_create decides, the URL policy included)."""
from django import forms
from django.utils.translation import gettext_lazy as _

from api.webhooks import EVENT_TYPES


class WebhookSubscriptionForm(forms.Form):
    url = forms.CharField(
        max_length=500,
        label=_("Receiver URL"),
        help_text=_("Where we POST each event, e.g. https://crm.example.org/hooks/hipaamail. https:// only."),
        # A text input (the stylesheet styles those) that phones still type as an address.
        widget=forms.TextInput(attrs={"inputmode": "url", "autocomplete": "off", "spellcheck": "false"}),
    )
    event_types = forms.MultipleChoiceField(
        choices=list(EVENT_TYPES.items()),
        widget=forms.CheckboxSelectMultiple,
        label=_("Events to send"),
        help_text=_("Each event carries ids and codes only, never a name, an address or an email."),
    )
