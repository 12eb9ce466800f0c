"""Journey review and control forms: input shape only. The second factor again is the campaign review's own form
(campaigns.forms.review.SecondFactorForm); the rules live in journeys.services.journeys."""
from django import forms
from django.utils.translation import gettext_lazy as _

from campaigns.forms.review import SecondFactorForm
from campaigns.services.lifecycle import COMMENT_MAX_LENGTH

__all__ = ["RejectForm", "SecondFactorForm", "StopForm"]


class RejectForm(forms.Form):
    comment = forms.CharField(
        max_length=COMMENT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4}),
        label=_("Why is it rejected?"),
        help_text=_("The author reads this on the journey's page. Write about the journey, never about a patient."),
        error_messages={"required": _("Say why the journey is rejected: the comment is required.")},
    )


class StopForm(forms.Form):
    """Stopping cannot be undone, so it asks to be confirmed (a checkbox: it works without script)."""

    confirm = forms.BooleanField(
        label=_("I understand: every running enrolment ends now and no message not yet sent will be sent."),
        error_messages={"required": _("Tick the box to confirm: stopping a journey cannot be undone.")},
    )
