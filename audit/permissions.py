"""Who may read the audit trail: compliance officers and administrators; everyone else, marketers included,
gets the same 404 as a page that does not exist (R-MIN-NECESSARY).

The role names are accounts.roles'; the audit app imports no other package of the project (lint-imports), so
they are repeated here, and audit/tests/test_views.py holds the two lists equal.
"""
from audit.exceptions import NotFound

AUDIT_READERS = ("compliance officer", "administrator")


def reads_audit_trail(user) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser:
        return True
    return user.groups.filter(name__in=AUDIT_READERS).exists()


def access_audit_trail(user) -> None:
    if not reads_audit_trail(user):
        raise NotFound
