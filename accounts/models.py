"""What a staff member chooses for themselves. Roles are Django groups (accounts.roles); the second factor is
django-otp's devices."""
from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class StaffPreference(models.Model):
    """One staff member's language: the language of their pages on every device they sign in from, and of the product's
    mail to them (review notices). Without a row, their browser's language decides (LocaleMiddleware)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_preference")
    language = models.CharField(_("language"), max_length=8, choices=settings.LANGUAGES)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.language}"
