"""Staff roles are Django groups. A staff member has exactly the role their job needs (R-MIN-NECESSARY)."""
from audit.sentences import ROLE_WORDS

MARKETER = "marketer"
COMPLIANCE_OFFICER = "compliance officer"
ADMINISTRATOR = "administrator"
ALL = (MARKETER, COMPLIANCE_OFFICER, ADMINISTRATOR)
# The roles in the reader's language, as the audit trail writes them (the audit app, below this one, keeps the words;
# the group names stay English: they are data).
LABELS = {name: ROLE_WORDS[name] for name in ALL}


def roles_of(user) -> set[str]:
    if not user.is_authenticated:
        return set()
    cached = getattr(user, "_hipaamail_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ALL).values_list("name", flat=True))
        if user.is_superuser:
            cached.add(ADMINISTRATOR)
        user._hipaamail_roles = cached
    return cached


def is_staff_member(user) -> bool:
    """A staff member is a signed-in user with at least one role. Patients have none."""
    return bool(roles_of(user))


def sees_patient_evidence(user) -> bool:
    """Compliance officers and administrators see patient-level evidence; marketers see aggregates only."""
    return bool(roles_of(user) & {COMPLIANCE_OFFICER, ADMINISTRATOR})
