"""The small-cell policy in one place (issue 12): campaigns.permissions.count_policy_for decides who sees exact counts;
the selectors shape counts with it; no view decides by role (R-SMALL-CELL, R-MIN-NECESSARY)."""
import ast
from pathlib import Path

import pytest

from accounts.tests.factories import staff_make
from campaigns.permissions import CountPolicy, count_policy_for
from campaigns.selectors.segments import WITHHELD, SegmentCounts, segment_counts_shown

ROOT = Path(__file__).resolve().parents[2]
SMALL_CELL_NAMES = {
    "SMALL_CELL_LIMIT",
    "count_for_marketer",
    "segment_counts_for_marketer",
    "segment_matched_for_marketer",
    "WITHHELD",
    "FEWER",
}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "role, exact",
    [("marketer", False), ("compliance officer", True), ("administrator", True), (None, False)],
    ids=["marketer", "compliance-officer", "administrator", "no-role"],
)
def test_r_small_cell_exact_counts_only_for_those_who_see_patient_evidence(role, exact):
    user = staff_make(role=role) if role else _no_role_user()

    policy = count_policy_for(user)

    assert policy.exact is exact
    assert policy.count(7) == ("7" if exact else "fewer than 11")
    assert policy.count(0) == "0" and policy.count(12_345) == "12,345"


def _no_role_user():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username="no-role", password="x")


def test_r_small_cell_nobody_signed_in_gets_suppressed_counts():
    assert count_policy_for(None).exact is False


def test_r_small_cell_the_counts_panel_follows_the_policy_with_complementary_suppression():
    counts = SegmentCounts(matched=40, covered=35, excluded={"no_authorization": 5, "revoked": 0})

    exact = segment_counts_shown(counts, policy=CountPolicy(exact=True))
    suppressed = segment_counts_shown(counts, policy=count_policy_for(None))

    assert (exact["matched"], exact["covered"], exact["suppressed"]) == ("40", "35", False)
    assert [row[2] for row in exact["excluded"]] == ["5"]
    # 5 is suppressed, so the total is withheld too: 40 - 35 would give the 5 back.
    assert (suppressed["matched"], suppressed["covered"], suppressed["complementary"]) == (WITHHELD, "35", True)
    assert [row[2] for row in suppressed["excluded"]] == ["fewer than 11"]


def _view_modules() -> list[Path]:
    return sorted((ROOT / "campaigns" / "views").glob("*.py")) + sorted((ROOT / "consent" / "views").glob("*.py"))


def _names_used(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    names |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    return names


def test_r_small_cell_no_view_decides_the_small_cell_rule_itself():
    views = _view_modules()
    names = {path.name for path in views}
    assert {"segments.py", "results.py", "campaigns.py", "patients.py"} <= names

    offenders = {str(path.relative_to(ROOT)): sorted(_names_used(path) & SMALL_CELL_NAMES) for path in views}
    assert {path: used for path, used in offenders.items() if used} == {}
    # The views that show counts ask the one policy.
    for name in ("segments.py", "results.py", "campaigns.py"):
        assert "count_policy_for" in _names_used(ROOT / "campaigns" / "views" / name)
