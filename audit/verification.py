"""What a verify checks besides the chain itself: other apps' records held against the sealed events that
recorded them (R-SEC-INTEGRITY).

The chain proves that no sealed event was changed; it says nothing of the rows those events describe. An app
whose rows are recorded in sealed events registers a verifier here (from its AppConfig.ready(); the audit app
imports no other app, so it cannot look for them itself), and every verify (`manage.py audit_verify`, the
nightly audit.tasks.audit_verify_task) runs each one after the chain walk, over the events that walk covered.
Each verifier returns a CheckResult: how many records it compared, how many differ, and the first few
mismatches named in ids and codes only (they are kept in the audit.verified event, which holds no PHI).

    verifier_register("deliveries", campaigns.delivery_verification.deliveries_check)
"""
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import DatabaseError, transaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scope:
    """The sealed events a verifier may rely on: sequences after `after_sequence` (the archive floor, 0 when
    nothing is archived) through `through_sequence` (the last event the walk found intact). Events beyond it,
    and events not sealed yet, are not vouched for by this verify."""

    after_sequence: int
    through_sequence: int


@dataclass
class CheckResult:
    """What one verifier found. `named`: the first mismatches, each a dict of ids and codes (kept in the
    audit.verified event); `counts`: any other figures worth keeping (ints). A subclass may say more in
    `summary()` and `lines()`, which the command prints and the alert mails."""

    name: str
    compared: int = 0
    mismatches: int = 0
    named: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    error: str = ""  # the type of an error that stopped the verifier: the check did not complete

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and not self.error

    def summary(self) -> str:
        if self.error:
            return f"{self.name}: the check could not complete ({self.error})."
        return f"{self.name}: {self.compared:,} compared, {_mismatches(self.mismatches)}."

    def lines(self) -> list[str]:
        return [" ".join(f"{key} {value}" for key, value in entry.items()) for entry in self.named]

    def details(self) -> dict:
        """What the audit.verified event keeps of it."""
        kept = {"ok": self.ok, "compared": self.compared, "mismatches": self.mismatches, **self.counts,
                "named": self.named}
        if self.error:
            kept["error"] = self.error
        return kept


def _mismatches(n: int) -> str:
    return f"{n:,} mismatch" + ("" if n == 1 else "es")


Verifier = Callable[..., CheckResult]  # called as verifier(scope=Scope(...))
_verifiers: dict[str, Verifier] = {}


def verifier_register(name: str, function: Verifier) -> None:
    """Run `function(scope=...)` in every verify from now on, under `name` (a code: it is a key of the
    audit.verified event's details). Registering the same name again replaces it (ready() may run twice)."""
    _verifiers[name] = function


def verifier_list() -> list[tuple[str, Verifier]]:
    return list(_verifiers.items())


def verifiers_run(*, scope: Scope) -> list[CheckResult]:
    """Run every registered verifier, in the order registered. One that fails with a database or value error
    (a malformed record, say) does not stop the others; its result says the check did not complete, which
    counts as not ok."""
    results = []
    for name, function in _verifiers.items():
        try:
            with transaction.atomic():  # a savepoint inside a caller's transaction: an error leaves it usable
                result = function(scope=scope)
        except (DatabaseError, ValueError, TypeError) as error:
            logger.error("audit: the %s check did not complete (%s)", name, type(error).__name__)
            result = CheckResult(name=name, error=type(error).__name__)
        result.name = name
        results.append(result)
    return results
