"""One vocabulary for the audit trail (issue 12): every action and actor kind is a constant in audit/actions.py;
audit_record refuses anything else, and a patient is named by the event's patient_id column, never again inside
its details (R-SEC-AUDIT, R-NO-PHI-LEAK)."""
import ast
from pathlib import Path

import pytest

from audit import actions
from audit.models import AuditEvent
from audit.services import audit_record

ROOT = Path(__file__).resolve().parents[2]
APPS = ("accounts", "audit", "campaigns", "consent", "hipaamail")


@pytest.mark.django_db
def test_r_sec_audit_an_unknown_action_is_refused_and_nothing_is_written():
    with pytest.raises(ValueError, match="not an audit action"):
        audit_record(actor=None, actor_role=actions.SYSTEM, action="campaign.approoved")

    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["patient", "patient_id"])
def test_r_no_phi_leak_a_patient_in_the_details_is_refused_it_goes_in_patient_id(key):
    with pytest.raises(ValueError, match="patient_id"):
        audit_record(actor=None, action=actions.PATIENT_VIEWED, patient_id=7, details={key: 7})

    assert not AuditEvent.objects.exists()
    event = audit_record(actor=None, action=actions.PATIENT_VIEWED, patient_id=7)
    assert (event.patient_id, event.details) == (7, {})


def test_every_action_is_unique_and_shaped_subject_dot_event():
    values = [
        value for name, value in vars(actions).items()
        if name.isupper() and not name.startswith("STEP_UP_") and isinstance(value, str) and value in actions.ACTIONS
    ]
    assert len(values) == len(set(values)) == len(actions.ACTIONS) > 80
    assert [value for value in values if not actions.ACTION_PATTERN.match(value)] == []
    assert not actions.ACTIONS & actions.ACTOR_KINDS
    assert not actions.ACTIONS & (actions.STEP_UP_PURPOSES - {actions.STEP_UP_EXPORT})


def _domain_modules() -> list[Path]:
    return [
        path
        for app in APPS
        for path in sorted((ROOT / app).rglob("*.py"))
        if "tests" not in path.parts and "migrations" not in path.parts and path.name != "actions.py"
    ]


def _literal_uses(path: Path) -> tuple[int, list[str]]:
    """(how many audit_record calls the module makes, the literal action / actor strings it passes anywhere)."""
    calls, found = 0, []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        calls += name == "audit_record"
        if name == "add_argument":  # argparse's action="store_true" is not ours
            continue
        for keyword in node.keywords:
            literal = isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, str)
            if keyword.arg in ("action", "action__startswith") and literal:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {keyword.arg}={keyword.value.value!r}")
            if keyword.arg == "action__in" and isinstance(keyword.value, (ast.List, ast.Tuple, ast.Set)):
                for element in keyword.value.elts:
                    if isinstance(element, ast.Constant):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} action__in={element.value!r}")
            if name == "audit_record" and keyword.arg == "actor_role" and literal and keyword.value.value:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} actor_role={keyword.value.value!r}")
    return calls, found


def test_r_sec_audit_the_product_names_actions_and_actor_kinds_only_by_their_constants():
    modules = _domain_modules()
    calls, found = 0, []
    for path in modules:
        module_calls, module_found = _literal_uses(path)
        calls += module_calls
        found += module_found

    assert calls > 60  # the scan saw the product's audit_record calls, so an empty list below means something
    assert found == []
