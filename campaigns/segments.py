"""Segments: a tree of rules over coded patient attributes, compiled to ONE SQL query, and its live counts.

Rule tree format (stored in Segment.rules as JSON)
-------------------------------------------------

The root is a group. A group combines its rules with AND or OR::

    {"op": "and" | "or", "rules": [<rule>, ...]}

A rule is a group, a negation ``{"not": <rule>}``, or one of these leaves (every bound or list is
required unless it says optional):

    {"field": "age", "min": 65, "max": 80}          age in whole years = this year - birth_year; both bounds
                                                    inclusive, either one optional (at least one)
    {"field": "sex", "in": ["F", "M", "X"]}         one of the coded sexes
    {"field": "postal_code", "prefix": "627"}       postal code starts with
    {"field": "postal_code", "in": ["62701"]}       postal code is one of
    {"field": "state", "in": ["IL", "WI"]}          two-letter state code is one of
    {"field": "condition", "any": ["E11", "G47.33"]} has a condition whose code starts with any of these
                                                    ("E11" matches "E11" and "E11.9"; codes are upper case)
    {"field": "program", "any": ["DPP"]}            enrolled now in any of these programs (exact codes)
    {"field": "last_visit", "after": "2025-01-01", "before": "2026-01-01"}
                                                    last visit on or after `after` and strictly before
                                                    `before` (ISO dates), either one optional (at least one)

A patient whose attribute is unknown (no birth year, no last visit, blank sex or postal code) matches no
leaf on that attribute, and so does match its negation.

Limits: a group has at least one rule; groups and negations nest at most MAX_DEPTH levels (the root is level
1); a tree has at most MAX_RULES leaves.

Compilation: one Q object per tree (Exists subqueries for conditions and programs), so a segment is one SELECT with no
per-patient query and no filtering in Python. `segment_queryset` is what the campaign launch uses (through
`segment_patient_ids`).

Counts (R-SMALL-CELL, R-MIN-NECESSARY): `segment_counts` gives matched, covered for a purpose (THE predicate,
consent.selectors.coverage.authorization_covering_list) and the uncovered split by reason
(consent.selectors.coverage.authorization_gap_list); `segment_counts_for_marketer` suppresses small cells.
"""
from __future__ import annotations

import re
from datetime import date

from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from campaigns.models import Segment
from consent.models import Patient, PatientCondition, ProgramEnrolment

MAX_DEPTH = 4


MAX_RULES = 50


MAX_VALUES = 200  # items in one "in"/"any" list


FIELDS = ("age", "sex", "postal_code", "state", "condition", "program", "last_visit")


FIELD_LABELS = {
    "age": gettext_lazy("Age"),
    "sex": gettext_lazy("Sex"),
    "postal_code": gettext_lazy("Postal code"),
    "state": gettext_lazy("State"),
    "condition": gettext_lazy("Condition code"),
    "program": gettext_lazy("Program enrolment"),
    "last_visit": gettext_lazy("Last visit"),
}


SEXES = ("F", "M", "X")


_STATE = re.compile(r"^[A-Z]{2}$")


_POSTAL = re.compile(r"^[A-Za-z0-9 \-]{1,10}$")


_CODE = re.compile(r"^[A-Z0-9.]{1,20}$")


_PROGRAM = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,39}$")


_LEAF_KEYS = {
    "age": ({"min", "max"}, set()),
    "sex": ({"in"}, {"in"}),
    "postal_code": ({"prefix", "in"}, set()),
    "state": ({"in"}, {"in"}),
    "condition": ({"any"}, {"any"}),
    "program": ({"any"}, {"any"}),
    "last_visit": ({"after", "before"}, set()),
}


def segment_rules_validate(rules) -> list[str]:
    """Every problem of a rule tree, in plain words; an empty list means the tree is valid."""
    errors: list[str] = []
    if not isinstance(rules, dict) or "op" not in rules:
        return [_("The rules must be a group: choose whether all or any of its rules must match.")]
    leaves = _validate_node(rules, where=_("The main group"), depth=1, errors=errors, must_be_group=True)
    if leaves > MAX_RULES:
        errors.append(_("A segment can have at most %(most)s rules; this one has %(count)s.") % {"most": MAX_RULES, "count": leaves})
    return errors


def _validate_node(node, *, where: str, depth: int, errors: list[str], must_be_group: bool = False) -> int:
    """Append the node's problems to `errors`; return how many leaves it holds."""
    if depth > MAX_DEPTH:
        errors.append(
            _("%(where)s is nested too deep: groups can be nested at most %(most)s levels.") % {"where": where, "most": MAX_DEPTH}
        )
        return 0
    if not isinstance(node, dict):
        errors.append(_("%(where)s is not a rule.") % {"where": where})
        return 0
    if "op" in node or must_be_group:
        if set(node) != {"op", "rules"}:
            errors.append(_("%(where)s must have exactly an operator (op) and a list of rules.") % {"where": where})
            return 0
        if node["op"] not in ("and", "or"):
            errors.append(_("%(where)s: the operator must be \u201cand\u201d or \u201cor\u201d.") % {"where": where})
        children = node["rules"]
        if not isinstance(children, list) or not children:
            errors.append(_("%(where)s is empty: add at least one rule.") % {"where": where})
            return 0
        return sum(
            _validate_node(
                child,
                where=_("Rule %(position)s of %(group)s") % {"position": position, "group": where[0].lower() + where[1:]},
                depth=depth + 1,
                errors=errors,
            )
            for position, child in enumerate(children, start=1)
        )
    if "not" in node:
        if set(node) != {"not"}:
            errors.append(_("%(where)s: a negation has only the rule it negates.") % {"where": where})
            return 0
        return _validate_node(node["not"], where=where, depth=depth + 1, errors=errors)
    _validate_leaf(node, where=where, errors=errors)
    return 1


def _validate_leaf(node: dict, *, where: str, errors: list[str]) -> None:
    name = node.get("field")
    if name not in FIELDS:
        errors.append(
            _("%(where)s: unknown field %(name)s. Choose one of: %(fields)s.")
            % {"where": where, "name": repr(str(name)[:30]), "fields": ", ".join(FIELDS)}
        )
        return
    label = FIELD_LABELS[name]
    allowed, required = _LEAF_KEYS[name]
    given = set(node) - {"field"}
    if given - allowed:
        errors.append(
            _("%(where)s: %(label)s does not take %(keys)s.")
            % {"where": where, "label": label, "keys": ", ".join(sorted(given - allowed))}
        )
        return
    if required - given:
        errors.append(
            _("%(where)s: %(label)s needs %(keys)s.")
            % {"where": where, "label": label, "keys": ", ".join(sorted(required - given))}
        )
        return
    problem = _LEAF_CHECKS[name](node)
    if problem:
        errors.append(f"{where}: {problem}")


def _check_age(node: dict) -> str:
    low, high = node.get("min"), node.get("max")
    if low is None and high is None:
        return _("an age rule needs a lowest age, a highest age, or both.")
    for bound in (low, high):
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int) or not 0 <= bound <= 130):
            return _("ages must be whole numbers from 0 to 130.")
    if low is not None and high is not None and low > high:
        return _("the lowest age is above the highest age.")
    return ""


def _check_list(values, *, pattern: re.Pattern, what: str) -> str:
    if not isinstance(values, list) or not values:
        return _("give at least one %(what)s.") % {"what": what}
    if len(values) > MAX_VALUES:
        return _("give at most %(most)s values.") % {"most": MAX_VALUES}
    bad = [value for value in values if not isinstance(value, str) or not pattern.match(value)]
    if bad:
        return _("%(value)s is not a valid %(what)s.") % {"value": repr(str(bad[0])[:20]), "what": what}
    return ""


def _check_sex(node: dict) -> str:
    values = node["in"]
    if not isinstance(values, list) or not values:
        return _("choose at least one sex.")
    if any(value not in SEXES for value in values):
        return _("sex must be F, M or X.")
    return ""


def _check_postal_code(node: dict) -> str:
    if ("prefix" in node) == ("in" in node):
        return _("a postal code rule needs either a prefix or a list of postal codes, not both.")
    if "prefix" in node:
        prefix = node["prefix"]
        if not isinstance(prefix, str) or not _POSTAL.match(prefix):
            return _("the postal code prefix must be 1 to 10 letters or digits.")
        return ""
    return _check_list(node["in"], pattern=_POSTAL, what=_("postal code"))


def _check_state(node: dict) -> str:
    return _check_list(node["in"], pattern=_STATE, what=_("two-letter state code (e.g. IL)"))


def _check_condition(node: dict) -> str:
    return _check_list(node["any"], pattern=_CODE, what=_("condition code (e.g. E11 or G47.33)"))


def _check_program(node: dict) -> str:
    return _check_list(node["any"], pattern=_PROGRAM, what=_("program code (e.g. DPP or CPAP-RESUPPLY)"))


def _check_last_visit(node: dict) -> str:
    if "after" not in node and "before" not in node:
        return _("a last-visit rule needs a first date, an end date, or both.")
    parsed = {}
    for key in ("after", "before"):
        if key in node:
            try:
                parsed[key] = date.fromisoformat(node[key]) if isinstance(node[key], str) else None
            except ValueError:
                parsed[key] = None
            if parsed[key] is None:
                return _("dates must be written as YYYY-MM-DD.")
    if len(parsed) == 2 and parsed["after"] >= parsed["before"]:
        return _("the first date must be before the end date.")
    return ""


_LEAF_CHECKS = {
    "age": _check_age,
    "sex": _check_sex,
    "postal_code": _check_postal_code,
    "state": _check_state,
    "condition": _check_condition,
    "program": _check_program,
    "last_visit": _check_last_visit,
}


def segment_rules_check(rules) -> None:
    """Raise a ValidationError (on the "rules" field) listing every problem of the tree."""
    errors = segment_rules_validate(rules)
    if errors:
        raise ValidationError({"rules": errors})


def segment_queryset(rules, *, today: date | None = None) -> QuerySet[Patient]:
    """The patients a rule tree selects: one SELECT (conditions as EXISTS subqueries), nothing in Python.

    `today` fixes the year ages are counted from (default: today in the project's time zone)."""
    segment_rules_check(rules)
    year = (today or timezone.localdate()).year
    return Patient.objects.filter(_compile(rules, year=year))


def segment_patient_ids(*, segment_id: int | None) -> QuerySet:
    """For the campaign launch: the ids of a campaign's audience as a subquery-ready `values("id")`
    queryset; `None` (a campaign without a segment) is every patient."""
    if segment_id is None:
        return Patient.objects.order_by("id").values("id")
    segment = Segment.objects.get(pk=segment_id)
    return segment_queryset(segment.rules).order_by("id").values("id")


def _compile(node: dict, *, year: int) -> Q:
    if "op" in node:
        children = [_compile(child, year=year) for child in node["rules"]]
        combined = children[0]
        for child in children[1:]:
            combined = (combined & child) if node["op"] == "and" else (combined | child)
        return combined
    if "not" in node:
        return ~_compile(node["not"], year=year)
    return _LEAF_COMPILERS[node["field"]](node, year)


def _age(node: dict, year: int) -> Q:
    q = Q()
    if node.get("min") is not None:
        q &= Q(birth_year__lte=year - node["min"])
    if node.get("max") is not None:
        q &= Q(birth_year__gte=year - node["max"])
    return q


def _postal_code(node: dict, year: int) -> Q:
    # Validation keeps values non-empty, so a blank postal code never matches.
    if "prefix" in node:
        return Q(postal_code__startswith=node["prefix"])
    return Q(postal_code__in=node["in"])


def _condition(node: dict, year: int) -> Q:
    prefixes = Q()
    for code in node["any"]:
        prefixes |= Q(code__startswith=code)
    return Q(Exists(PatientCondition.objects.filter(prefixes, patient=OuterRef("pk"))))


def _program(node: dict, year: int) -> Q:
    return Q(Exists(ProgramEnrolment.objects.filter(patient=OuterRef("pk"), code__in=node["any"])))


def _last_visit(node: dict, year: int) -> Q:
    q = Q(last_visit__isnull=False)
    if "after" in node:
        q &= Q(last_visit__gte=date.fromisoformat(node["after"]))
    if "before" in node:
        q &= Q(last_visit__lt=date.fromisoformat(node["before"]))
    return q


_LEAF_COMPILERS = {
    "age": _age,
    "sex": lambda node, year: Q(sex__in=node["in"]),
    "postal_code": _postal_code,
    "state": lambda node, year: Q(state__in=node["in"]),
    "condition": _condition,
    "program": _program,
    "last_visit": _last_visit,
}
