"""The shape of the import uploads (patients, care events). The rules are in consent.services.imports and
consent.services.event_import."""
from django import forms
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from consent.patient_import.validate import MAX_FILE_BYTES, Mode
from consent.services.event_import import MAX_FILE_BYTES as EVENT_MAX_FILE_BYTES

# Each mode with the one line that says what it does to a patient already here.
MODE_CHOICES = [
    (Mode.CREATE, _("Add new patients only — a row for a patient already here is an error, and nothing is imported.")),
    (
        Mode.UPDATE,
        _(
            "Add and update (re-import an export) — rows are matched by external_id: a patient found is updated with "
            "the file's columns, any other row adds a patient."
        ),
    ),
]


class PatientImportUploadForm(forms.Form):
    mode = forms.ChoiceField(
        label=_("What the file does"),
        choices=MODE_CHOICES,
        initial=Mode.CREATE,
        widget=forms.RadioSelect,
        error_messages={
            "required": _("Choose what the file does."),
            "invalid_choice": _("Choose one of the two modes."),
        },
    )
    file = forms.FileField(
        label=_("CSV file"),
        help_text=_("A CSV export (UTF-8) with a header row. Nothing is written until you confirm the preview."),
        error_messages={"required": _("Choose a CSV file to upload."), "empty": _("The file is empty.")},
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_FILE_BYTES:
            raise forms.ValidationError(gettext("The file is larger than 50 MB. Split it into smaller files."))
        return upload


class EventImportForm(forms.Form):
    """A CSV file of care events (consent.services.event_import): checked only, or checked and recorded."""

    CHECK = "check"
    RECORD = "record"

    action = forms.ChoiceField(
        label=_("What to do"),
        choices=[
            (CHECK, _("Check the file only — nothing is written; you see every problem and the counts.")),
            (RECORD, _("Check and record the events — a file with any problem records nothing.")),
        ],
        initial=CHECK,
        widget=forms.RadioSelect,
        error_messages={
            "required": _("Choose what to do with the file."),
            "invalid_choice": _("Choose one of the two."),
        },
    )
    file = forms.FileField(
        label=_("CSV file of care events"),
        help_text=_("A CSV file (UTF-8) with a header row, one event per row. The file itself is not kept."),
        error_messages={"required": _("Choose a CSV file to upload."), "empty": _("The file is empty.")},
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > EVENT_MAX_FILE_BYTES:
            raise forms.ValidationError(
                gettext("The file is larger than %(size)s MB. Split it into smaller files.")
                % {"size": EVENT_MAX_FILE_BYTES // (1024 * 1024)}
            )
        return upload
