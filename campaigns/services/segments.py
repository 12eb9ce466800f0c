"""Saving a segment: its rule tree validated and stored, audited."""
from __future__ import annotations

from django.db import transaction

from audit import actions
from audit.services import audit_record
from campaigns.models import Segment
from campaigns.segments import segment_rules_check


def segment_save(*, actor, name: str, rules: dict, segment_id: int | None = None) -> Segment:
    """Create a segment, or change one (`segment_id`). Invalid rules raise a ValidationError naming each
    problem. Audited as `segment.saved` with ids and counts only (a rule tree can name conditions)."""
    segment_rules_check(rules)
    with transaction.atomic(durable=True):
        if segment_id is None:
            segment = Segment(created_by=actor)
        else:
            segment = Segment.objects.select_for_update().get(pk=segment_id)
        segment.name = name.strip()
        segment.rules = rules
        segment.full_clean()
        if segment_id is None:
            segment.save(force_insert=True)
        else:
            segment.save(update_fields=["name", "rules", "updated_at"])
        audit_record(
            actor=actor,
            action=actions.SEGMENT_SAVED,
            object_type="segment",
            object_id=segment.pk,
            details={"created": segment_id is None, "rule_count": _leaf_count(rules)},
        )
    return segment


def _leaf_count(node: dict) -> int:
    if "op" in node:
        return sum(_leaf_count(child) for child in node["rules"])
    if "not" in node:
        return _leaf_count(node["not"])
    return 1
