"""The shape of a patient import upload. The rules are in consent.services.imports."""
from django import forms

from consent.patient_import.validate import MAX_FILE_BYTES, Mode

# Each mode with the one line that says what it does to a patient already here.
MODE_CHOICES = [
    (Mode.CREATE, "Add new patients only — a row for a patient already here is an error, and nothing is imported."),
    (
        Mode.UPDATE,
        "Add and update (re-import an export) — rows are matched by external_id: a patient found is updated with "
        "the file's columns, any other row adds a patient.",
    ),
]


class PatientImportUploadForm(forms.Form):
    mode = forms.ChoiceField(
        label="What the file does",
        choices=MODE_CHOICES,
        initial=Mode.CREATE,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose what the file does.", "invalid_choice": "Choose one of the two modes."},
    )
    file = forms.FileField(
        label="CSV file",
        help_text="A CSV export (UTF-8) with a header row. Nothing is written until you confirm the preview.",
        error_messages={"required": "Choose a CSV file to upload.", "empty": "The file is empty."},
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_FILE_BYTES:
            raise forms.ValidationError("The file is larger than 50 MB. Split it into smaller files.")
        return upload
