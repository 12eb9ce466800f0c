"""Audit of account events. Glue only: no business rule lives here."""
from allauth.account.signals import password_reset, user_logged_in
from django.contrib.auth.signals import user_logged_out, user_login_failed
from django.dispatch import receiver

from accounts.language import language_session_begin
from audit import actions
from audit.services import audit_record


@receiver(user_logged_in)
def _signed_in(sender, request, user, **kwargs):
    if request is not None:
        language_session_begin(request, user)
    audit_record(actor=user, action=actions.ACCOUNT_SIGNED_IN, object_type="user", object_id=user.pk)


@receiver(user_logged_out)
def _signed_out(sender, request, user, **kwargs):
    if user is not None:
        audit_record(actor=user, action=actions.ACCOUNT_SIGNED_OUT, object_type="user", object_id=user.pk)


@receiver(user_login_failed)
def _sign_in_failed(sender, credentials, request=None, **kwargs):
    # The attempted login name is not recorded: it may be a mistyped password or someone else's address.
    audit_record(actor=None, actor_role=actions.ANONYMOUS, action=actions.ACCOUNT_SIGN_IN_FAILED)


@receiver(password_reset)
def _password_reset(sender, request, user, **kwargs):
    audit_record(actor=user, action=actions.ACCOUNT_PASSWORD_RESET, object_type="user", object_id=user.pk)
