"""The segment builder form: input shape only. It turns rows of the page into a rule tree (the format of
campaigns.segments) and back; the tree's validity is decided by campaigns.segments.segment_rules_validate.

Shape the form can show: a main group (all / any) of up to MAIN_ROWS rows, plus one nested group of up to
NESTED_ROWS rows that joins the main group as one more rule. Each row is one leaf, optionally negated.
"""
import re
from datetime import date

from django import forms
from django.utils.translation import gettext_lazy as _

from campaigns.segments import segment_rules_validate
from consent.models import Purpose

MAIN_ROWS = 8
NESTED_ROWS = 4

ROW_FIELDS = [
    ("", _("(no rule)")),
    ("age", _("Age between")),
    ("sex", _("Sex is")),
    ("postal_prefix", _("Postal code starts with")),
    ("postal_in", _("Postal code is one of")),
    ("state", _("State is one of")),
    ("condition", _("Condition code starts with")),
    ("program", _("Enrolled in program")),
    ("last_visit", _("Last visit between")),
]
# Which inputs a row kind uses; the page hides the others.
ROW_INPUTS = {
    "age": ("low", "high"),
    "last_visit": ("low", "high"),
    "sex": ("values",),
    "postal_prefix": ("values",),
    "postal_in": ("values",),
    "state": ("values",),
    "condition": ("values",),
    "program": ("values",),
}
OPERATORS = [("and", _("all of these rules (AND)")), ("or", _("any of these rules (OR)"))]
_SPLIT = re.compile(r"[\s,;]+")


def _row_names(group: str, count: int) -> list[str]:
    return [f"{group}-{index}" for index in range(count)]


class SegmentForm(forms.Form):
    name = forms.CharField(max_length=200, label=_("Segment name"))
    op_main = forms.ChoiceField(choices=OPERATORS, label=_("Patients who match"), initial="and")
    op_nested = forms.ChoiceField(
        choices=OPERATORS, label=_("Nested group: patients who match"), initial="or", required=False
    )
    purpose = forms.ModelChoiceField(
        queryset=Purpose.objects.order_by("name"),
        required=False,
        label=_("Count coverage for the purpose"),
        help_text=_("Only for the counts; the campaign chooses its purpose."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for row in _row_names("main", MAIN_ROWS) + _row_names("nested", NESTED_ROWS):
            self.fields[f"{row}-field"] = forms.ChoiceField(choices=ROW_FIELDS, required=False, label=_("Rule"))
            self.fields[f"{row}-negate"] = forms.BooleanField(required=False, label=_("Exclude these (NOT)"))
            self.fields[f"{row}-low"] = forms.CharField(required=False, max_length=10, label=_("From"))
            self.fields[f"{row}-high"] = forms.CharField(required=False, max_length=10, label=_("To"))
            self.fields[f"{row}-values"] = forms.CharField(required=False, max_length=2000, label=_("Values"))
        self.rules = None

    def rows(self, group: str) -> list[dict]:
        count = MAIN_ROWS if group == "main" else NESTED_ROWS
        return [
            {
                "number": index + 1,
                "prefix": row,
                "field": self[f"{row}-field"],
                "negate": self[f"{row}-negate"],
                "low": self[f"{row}-low"],
                "high": self[f"{row}-high"],
                "values": self[f"{row}-values"],
            }
            for index, row in enumerate(_row_names(group, count))
        ]

    def main_rows(self):
        return self.rows("main")

    def nested_rows(self):
        return self.rows("nested")

    def clean(self):
        cleaned = super().clean()
        errors: list[str] = []
        main = self._group_rules("main", MAIN_ROWS, _("Rule"), errors)
        nested = self._group_rules("nested", NESTED_ROWS, _("Nested rule"), errors)
        if errors:
            raise forms.ValidationError(errors)
        if nested:
            main.append({"op": cleaned.get("op_nested") or "or", "rules": nested})
        if not main:
            raise forms.ValidationError(_("Add at least one rule: choose what a row checks, then fill in its values."))
        rules = {"op": cleaned.get("op_main") or "and", "rules": main}
        problems = segment_rules_validate(rules)
        if problems:
            raise forms.ValidationError(problems)
        self.rules = rules
        return cleaned

    def _group_rules(self, group: str, count: int, label: str, errors: list[str]) -> list[dict]:
        rules = []
        for index, row in enumerate(_row_names(group, count), start=1):
            kind = self.cleaned_data.get(f"{row}-field")
            if not kind:
                continue
            leaf, problem = _leaf_from_row(
                kind,
                low=(self.cleaned_data.get(f"{row}-low") or "").strip(),
                high=(self.cleaned_data.get(f"{row}-high") or "").strip(),
                values=(self.cleaned_data.get(f"{row}-values") or "").strip(),
            )
            if problem:
                errors.append(f"{label} {index}: {problem}")
                continue
            rules.append({"not": leaf} if self.cleaned_data.get(f"{row}-negate") else leaf)
        return rules


def _leaf_from_row(kind: str, *, low: str, high: str, values: str) -> tuple[dict | None, str]:
    items = [item for item in _SPLIT.split(values) if item]
    if kind == "age":
        leaf = {"field": "age"}
        for key, text in (("min", low), ("max", high)):
            if text:
                if not text.isdigit():
                    return None, _("ages must be whole numbers, such as 65.")
                leaf[key] = int(text)
        if len(leaf) == 1:
            return None, _("give a lowest age, a highest age, or both.")
        return leaf, ""
    if kind == "last_visit":
        leaf = {"field": "last_visit"}
        for key, text in (("after", low), ("before", high)):
            if text:
                try:
                    leaf[key] = date.fromisoformat(text).isoformat()
                except ValueError:
                    return None, _("dates must be written as YYYY-MM-DD, such as 2025-01-31.")
        if len(leaf) == 1:
            return None, _("give a first date, an end date, or both.")
        return leaf, ""
    if not items:
        return None, _("give at least one value.")
    if kind == "sex":
        return {"field": "sex", "in": [item.upper()[:1] for item in items]}, ""
    if kind == "postal_prefix":
        if len(items) > 1:
            return None, _("give one postal code prefix (use \u201cis one of\u201d for a list).")
        return {"field": "postal_code", "prefix": items[0]}, ""
    if kind == "postal_in":
        return {"field": "postal_code", "in": items}, ""
    if kind == "state":
        return {"field": "state", "in": [item.upper() for item in items]}, ""
    if kind == "condition":
        return {"field": "condition", "any": [item.upper() for item in items]}, ""
    if kind == "program":
        return {"field": "program", "any": [item.upper() for item in items]}, ""
    return None, _("choose what the rule checks.")


def initial_from_rules(rules: dict) -> dict | None:
    """The form's initial data for a saved tree, or None when the tree has a shape the form cannot show."""
    if not isinstance(rules, dict) or "op" not in rules:
        return None
    initial = {"op_main": rules["op"]}
    main_index = 0
    nested_seen = False
    for child in rules.get("rules", []):
        if "op" in child:
            if nested_seen or len(child["rules"]) > NESTED_ROWS:
                return None
            nested_seen = True
            initial["op_nested"] = child["op"]
            for index, grandchild in enumerate(child["rules"]):
                row = _row_from_leaf(grandchild)
                if row is None:
                    return None
                initial |= {f"nested-{index}-{key}": value for key, value in row.items()}
            continue
        row = _row_from_leaf(child)
        if row is None or main_index >= MAIN_ROWS:
            return None
        initial |= {f"main-{main_index}-{key}": value for key, value in row.items()}
        main_index += 1
    return initial


def _row_from_leaf(node: dict) -> dict | None:
    negate = "not" in node
    leaf = node["not"] if negate else node
    if "field" not in leaf:
        return None
    name = leaf["field"]
    row = {"negate": negate}
    if name == "age":
        row |= {"field": "age", "low": leaf.get("min", ""), "high": leaf.get("max", "")}
    elif name == "last_visit":
        row |= {"field": "last_visit", "low": leaf.get("after", ""), "high": leaf.get("before", "")}
    elif name == "postal_code" and "prefix" in leaf:
        row |= {"field": "postal_prefix", "values": leaf["prefix"]}
    elif name == "postal_code":
        row |= {"field": "postal_in", "values": ", ".join(leaf["in"])}
    elif name in ("sex", "state"):
        row |= {"field": name, "values": ", ".join(leaf["in"])}
    elif name in ("condition", "program"):
        row |= {"field": name, "values": ", ".join(leaf["any"])}
    else:
        return None
    return row
