"""The authorizations operations of the integration API."""
from ninja import Router

router = Router(tags=["authorizations"])
