"""Who may manage integrations: administrators only (after the second factor, as every staff page). Anyone else
gets the same 404 as a page that does not exist (R-MIN-NECESSARY)."""
from accounts.roles import ADMINISTRATOR, roles_of
from api.models import ApiKey
from audit.exceptions import NotFound


def access_integrations(user) -> None:
    if ADMINISTRATOR not in roles_of(user):
        raise NotFound


def access_api_key_by_id(user, api_key_id: int) -> ApiKey:
    access_integrations(user)
    key = ApiKey.objects.filter(pk=api_key_id).first()
    if key is None:
        raise NotFound
    return key
