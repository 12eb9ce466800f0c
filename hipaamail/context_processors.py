from django.conf import settings

from accounts import roles


def staff_roles(request):
    user = getattr(request, "user", None)
    names = roles.roles_of(user) if user is not None else set()
    return {
        "user_roles": sorted(names),
        "is_marketer": roles.MARKETER in names,
        "is_compliance": roles.COMPLIANCE_OFFICER in names,
        "is_administrator": roles.ADMINISTRATOR in names,
        "organisation_name": settings.HIPAAMAIL_ORGANISATION_NAME,
    }
