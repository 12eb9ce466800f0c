"""allauth glue: staff accounts are created by an administrator, never by sign-up; sign-in is throttled per client
address and per account (accounts.throttle) before allauth's own failed-attempt limits."""
from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.exceptions import ImmediateHttpResponse

from accounts.throttle import throttle_check

# allauth says "Successfully signed in as …" when the password is right, before the second factor: the person is
# not signed in yet. accounts.views says it once the second factor is passed (signed_in_message).
_SAID_AFTER_THE_SECOND_FACTOR = {"account/messages/logged_in.txt"}


class StaffAccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        return False

    def add_message(self, request, level, message_template=None, message_context=None, extra_tags="", message=None):
        if message_template in _SAID_AFTER_THE_SECOND_FACTOR:
            return
        super().add_message(
            request, level, message_template=message_template, message_context=message_context,
            extra_tags=extra_tags, message=message,
        )

    def pre_authenticate(self, request, **credentials) -> None:
        """Every sign-in attempt counts, right or wrong: 429 with Retry-After once an address or an account is over
        THROTTLE_STAFF_SIGN_IN (allauth's AccountMiddleware answers the ImmediateHttpResponse)."""
        account = str(credentials.get("email") or credentials.get("username") or "").strip().lower()
        refused = throttle_check(request, scope="staff_sign_in", key=f"staff:{account}" if account else None)
        if refused is not None:
            raise ImmediateHttpResponse(refused)
        super().pre_authenticate(request, **credentials)
