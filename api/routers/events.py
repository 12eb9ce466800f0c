"""The events operations of the integration API."""
from ninja import Router

router = Router(tags=["events"])
