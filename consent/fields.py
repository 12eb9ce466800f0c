from django.db import models

from consent import crypto


class EncryptedTextField(models.TextField):
    """Text stored encrypted (consent.crypto); it cannot be filtered on: look up by its digest instead."""

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return crypto.decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return crypto.encrypt(str(value))
