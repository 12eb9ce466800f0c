"""allauth glue: staff accounts are created by an administrator, never by sign-up; sign-in is throttled per client
address and per account (accounts.throttle) before allauth's own failed-attempt limits."""
from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.exceptions import ImmediateHttpResponse

from accounts.throttle import throttle_check


class StaffAccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        return False

    def pre_authenticate(self, request, **credentials) -> None:
        """Every sign-in attempt counts, right or wrong: 429 with Retry-After once an address or an account is over
        THROTTLE_STAFF_SIGN_IN (allauth's AccountMiddleware answers the ImmediateHttpResponse)."""
        account = str(credentials.get("email") or credentials.get("username") or "").strip().lower()
        refused = throttle_check(request, scope="staff_sign_in", key=f"staff:{account}" if account else None)
        if refused is not None:
            raise ImmediateHttpResponse(refused)
        super().pre_authenticate(request, **credentials)
