from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

# Django's own messages for a choice that is not offered quote what was sent ("Select a valid choice. <value> is
# not one of ..."). What was sent may be anything a client typed, PHI included, and an error message never repeats
# a value (R-NO-PHI-LEAK): every choice field of every form, ours and the libraries', says the same without it.
_INVALID_CHOICE = _("Select a valid choice. That one is not among the choices offered.")
_INVALID_PK_VALUE = _("Select a valid choice. That value is not an id.")


class HipaamailConfig(AppConfig):
    """The project package, the top of the house: settings, root URLs, the Celery app, middleware, and the demo's
    commands. Staff accounts live in the accounts app."""

    name = "hipaamail"
    verbose_name = "hipaamail"

    def ready(self):
        from django import forms

        from hipaamail import audit_names, checks  # noqa: F401 - checks registers the settings checks

        audit_names.register()  # the audit log's names for ids (audit.naming)

        for field in (forms.ChoiceField, forms.MultipleChoiceField, forms.ModelMultipleChoiceField):
            field.default_error_messages = {**field.default_error_messages, "invalid_choice": _INVALID_CHOICE}
        forms.ModelMultipleChoiceField.default_error_messages["invalid_pk_value"] = _INVALID_PK_VALUE
