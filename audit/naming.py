"""Names for the ids in the audit trail, looked up when a page is drawn (the stored events keep ids only).

The audit app imports no other app (lint-imports), so the apps that own the objects register a namer here (the
top layer does it for all of them: hipaamail.audit_names), as campaigns registers its verifier in
audit.verification. A namer answers for the objects the viewer may see and leaves the others out; a patient is
never named (R-MIN-NECESSARY, R-NO-PHI-LEAK: the log shows patients by number).
"""
from collections.abc import Callable, Iterable

# (ids as strings, viewer) -> {id: name}
Namer = Callable[[set[str], object], dict[str, str]]

_NAMERS: dict[str, Namer] = {}


def namer_register(kind: str, namer: Namer) -> None:
    """Register the namer of one kind of object ("campaign", "purpose", "purpose_code", ...); again replaces it."""
    _NAMERS[kind] = namer


def namer_list() -> list[str]:
    return sorted(_NAMERS)


def _wanted(events) -> dict[str, set[str]]:
    wanted: dict[str, set[str]] = {}
    for event in events:
        if event.object_type and event.object_id:
            wanted.setdefault(event.object_type, set()).add(str(event.object_id))
        role = event.actor_role or ""
        if role.startswith("api_key:"):
            wanted.setdefault("api_key", set()).add(role.removeprefix("api_key:"))
        details = event.details if isinstance(event.details, dict) else {}
        if isinstance(details.get("purpose"), str):
            wanted.setdefault("purpose_code", set()).add(details["purpose"])
        if isinstance(details.get("purpose_id"), int):
            wanted.setdefault("purpose", set()).add(str(details["purpose_id"]))
    return wanted


def names_for(events: Iterable, *, viewer) -> dict[tuple[str, str], str]:
    """{(kind, id): name} for every object the events name that a registered namer knows and lets `viewer` see:
    one query per kind of object on the page."""
    events = list(events)
    names: dict[tuple[str, str], str] = {}
    for kind, ids in _wanted(events).items():
        namer = _NAMERS.get(kind)
        if namer is None:
            continue
        for key, name in namer(ids, viewer).items():
            names[(kind, str(key))] = name
    return names
