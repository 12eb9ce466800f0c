"""The shape of a patient import upload. The rules are in consent.services.imports."""
from django import forms

from consent.patient_import.validate import MAX_FILE_BYTES


class PatientImportUploadForm(forms.Form):
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
