"""A campaign's state machine: create, submit, review (approve or reject), schedule, pause, resume, cancel. The
approver is never the author; controlling the send needs a compliance officer or an administrator."""
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

from audit import actions
from audit.services import audit_record
from campaigns.content import CampaignContent, content_of, content_problems
from campaigns.models import Campaign, CampaignBlock, ContentBlock, Delivery, EmailTemplate, Segment
from campaigns.notices import campaign_approved_notify, campaign_rejected_notify, campaign_submitted_notify
from campaigns.permissions import sending_control_check
from campaigns.scheduling import schedule_time_check, timezone_is_known
from campaigns.services.library import campaign_content_validate
from campaigns.tasks import campaign_dispatch_task
from consent.models import Purpose


def campaign_create(
    *, actor, name: str, purpose: Purpose, subject: str, body_text: str, template=None, blocks=()
) -> Campaign:
    """A draft. Its content: the subject, the marketer's introduction (`body_text`, plain text with merge fields),
    an approved email template (None: the plain layout) and approved content blocks in order (ADR 0005)."""
    blocks = list(blocks)
    campaign = Campaign(
        name=name, purpose=purpose, subject=subject, body_text=body_text, template=template, created_by=actor
    )
    campaign.full_clean()
    campaign_content_validate(
        CampaignContent(purpose=purpose, subject=subject, intro_text=body_text, template=template, blocks=tuple(blocks))
    )
    details = {"purpose": purpose.code}
    if template is not None:
        details["template"] = template.pk
    if blocks:
        details["blocks"] = [block.pk for block in blocks]
    with transaction.atomic():
        campaign.save(force_insert=True)
        CampaignBlock.objects.bulk_create(
            [CampaignBlock(campaign=campaign, block=block, position=index) for index, block in enumerate(blocks)]
        )
        audit_record(
            actor=actor,
            action=actions.CAMPAIGN_CREATED,
            object_type="campaign",
            object_id=campaign.pk,
            details=details,
        )
    return campaign


# What a step refuses from a status it cannot start from, one sentence per step (a translation needs the whole).
_CANNOT_BE = {
    "submitted": gettext_lazy("A %(status)s campaign cannot be submitted."),
    "approved": gettext_lazy("A %(status)s campaign cannot be approved."),
    "scheduled": gettext_lazy("A %(status)s campaign cannot be scheduled."),
    "paused": gettext_lazy("A %(status)s campaign cannot be paused."),
    "resumed": gettext_lazy("A %(status)s campaign cannot be resumed."),
    "cancelled": gettext_lazy("A %(status)s campaign cannot be cancelled."),
    "edited": gettext_lazy("A %(status)s campaign cannot be edited."),
    "rejected": gettext_lazy("A %(status)s campaign cannot be rejected."),
}


@contextmanager
def _campaign_locked(
    campaign_id: int, *, allowed: Collection[str], cannot_be: str, with_purpose: bool = False
) -> Iterator[Campaign]:
    """The frame of a lifecycle step: one durable transaction holding the campaign's row lock, entered only from
    one of the `allowed` statuses; any other raises ValidationError "A <status> campaign cannot be <cannot_be>.".
    The step changes the campaign inside (`campaign_move`), so the change and its audit row commit together.
    `with_purpose` reads the purpose along, locking the campaign's row only (of self): locking its purpose too
    would serialise every step of every campaign for that purpose."""
    with transaction.atomic(durable=True):
        if with_purpose:
            campaigns = Campaign.objects.select_for_update(of=("self",)).select_related("purpose")
        else:
            campaigns = Campaign.objects.select_for_update()
        campaign = campaigns.get(pk=campaign_id)
        if campaign.status not in allowed:
            raise ValidationError(_CANNOT_BE[cannot_be] % {"status": campaign.get_status_display().lower()})
        yield campaign


def campaign_move(
    campaign: Campaign, *, actor, to: str, action: str, details: dict | None = None, clean: bool = False, **fields
) -> None:
    """Move a locked campaign to status `to`, setting `fields` too, save just those, and audit `action` with
    details {"from": <status before>, "to": <to>, **details}. `clean`: full_clean() before saving."""
    previous = campaign.status
    campaign.status = to
    for name, value in fields.items():
        setattr(campaign, name, value)
    if clean:
        campaign.full_clean()
    campaign.save(update_fields=["status", *fields])
    audit_record(
        actor=actor,
        action=action,
        object_type="campaign",
        object_id=campaign.pk,
        details={"from": previous, "to": to, **(details or {})},
    )


def campaign_submit(*, actor, campaign_id: int) -> Campaign:
    """Submit a draft or rejected campaign for approval, once its content passes campaigns.content's checks:
    merge fields only those the purpose's current form lists (R-SEND-SCOPE), an approved template and approved
    blocks, something to send. A refusal names each problem and is audited (codes and field names only)."""
    refused = []
    with _campaign_locked(
        campaign_id, allowed=(Campaign.Status.DRAFT, Campaign.Status.REJECTED), cannot_be="submitted", with_purpose=True
    ) as campaign:
        refused = content_problems(content_of(campaign))
        if refused:
            audit_record(
                actor=actor,
                action=actions.CAMPAIGN_SUBMIT_REFUSED,
                object_type="campaign",
                object_id=campaign.pk,
                details={
                    "problems": sorted({problem.code for problem in refused}),
                    "fields": sorted({name for problem in refused for name in problem.fields}),
                },
            )
        else:
            campaign_move(campaign, actor=actor, to=Campaign.Status.SUBMITTED, action=actions.CAMPAIGN_SUBMITTED)
            campaign_submitted_notify(campaign=campaign, actor=actor)  # the reviewers, by email after the commit
    if refused:  # raised after the commit, so that the refusal stays on the record
        raise ValidationError([problem.message for problem in refused], code="content")
    return campaign


def campaign_approve(*, actor, campaign_id: int) -> Campaign:
    """Approve a submitted campaign and record who approved it and when. The approver is never the author: an
    author's attempt is refused and the refusal stays on the audit trail (maker-checker, issue 11)."""
    with _campaign_locked(campaign_id, allowed=(Campaign.Status.SUBMITTED,), cannot_be="approved") as campaign:
        refused = campaign.created_by_id == actor.pk
        if refused:
            audit_record(
                actor=actor,
                action=actions.CAMPAIGN_APPROVE_REFUSED,
                object_type="campaign",
                object_id=campaign.pk,
                details={"reason": "author"},
            )
        else:
            campaign_move(
                campaign,
                actor=actor,
                to=Campaign.Status.APPROVED,
                action=actions.CAMPAIGN_APPROVED,
                approved_by=actor,
                approved_at=timezone.now(),
            )
            campaign_approved_notify(campaign=campaign, actor=actor)  # the author
    if refused:  # raised after the commit, so that the refusal stays on the record
        raise PermissionDenied("A campaign's author cannot approve it.")
    return campaign


def campaign_schedule(*, actor, campaign_id: int, send_at: datetime, timezone_name: str) -> Campaign:
    """Schedule an approved campaign (or move a scheduled one) to `send_at`, an aware instant in the future,
    entered in `timezone_name` (kept to show the time back as it was entered). The scheduler launches it then
    (campaigns.tasks.campaign_launch_due_task)."""
    sending_control_check(actor)
    if send_at.tzinfo is None:
        raise ValueError("send_at must be an aware datetime")
    if not timezone_is_known(timezone_name):
        raise ValidationError(gettext("Choose a time zone from the list."))
    schedule_time_check(send_at)
    scheduled_for = send_at.astimezone(UTC)
    with _campaign_locked(
        campaign_id, allowed=(Campaign.Status.APPROVED, Campaign.Status.SCHEDULED), cannot_be="scheduled"
    ) as campaign:
        campaign_move(
            campaign,
            actor=actor,
            to=Campaign.Status.SCHEDULED,
            action=actions.CAMPAIGN_SCHEDULED,
            details={"scheduled_for": scheduled_for.strftime("%Y-%m-%dT%H:%M:%SZ"), "timezone": timezone_name},
            scheduled_for=scheduled_for,
            schedule_timezone=timezone_name,
        )
    return campaign


def campaign_pause(*, actor, campaign_id: int) -> Campaign:
    """Pause a sending campaign: workers claim no more of its deliveries (a batch already claimed finishes and
    is recorded). A scheduled campaign can be paused too: the scheduler then leaves it alone until resumed."""
    sending_control_check(actor)
    with _campaign_locked(
        campaign_id, allowed=(Campaign.Status.SENDING, Campaign.Status.SCHEDULED), cannot_be="paused"
    ) as campaign:
        campaign_move(campaign, actor=actor, to=Campaign.Status.PAUSED, action=actions.CAMPAIGN_PAUSED)
    return campaign


def campaign_resume(*, actor, campaign_id: int) -> Campaign:
    """Resume a paused campaign: sending again (the workers are woken) if it had been launched, else scheduled
    again (and launched by the scheduler at once if its time has passed meanwhile)."""
    sending_control_check(actor)
    with _campaign_locked(campaign_id, allowed=(Campaign.Status.PAUSED,), cannot_be="resumed") as campaign:
        to = Campaign.Status.SENDING if campaign.launched_at else Campaign.Status.SCHEDULED
        campaign_move(campaign, actor=actor, to=to, action=actions.CAMPAIGN_RESUMED)
        if campaign.status == Campaign.Status.SENDING:
            transaction.on_commit(lambda: campaign_dispatch_task.delay(campaign.pk))
    return campaign


CANCELLABLE = {Campaign.Status.APPROVED, Campaign.Status.SCHEDULED, Campaign.Status.SENDING, Campaign.Status.PAUSED}


def campaign_cancel(*, actor, campaign_id: int) -> Campaign:
    """Cancel a campaign before or while it sends. Every delivery still queued becomes blocked with the reason
    `campaign_cancelled` in the same transaction — a terminal state, so no queued delivery is left behind.

    A batch a worker is sending at that moment holds its deliveries' row locks: the cancel waits for it to
    commit, then finds those rows sent and leaves them so (in-flight batches finish). Rows are locked in
    primary-key order, as the sender locks them, so the two cannot deadlock. Claimed-but-not-yet-locked rows
    are blocked here, and the sender, which sends only rows still queued, skips them.
    """
    sending_control_check(actor)
    with _campaign_locked(campaign_id, allowed=CANCELLABLE, cannot_be="cancelled") as campaign:
        blocked = campaign_deliveries_cancel(campaign_id=campaign.pk)
        campaign_move(
            campaign,
            actor=actor,
            to=Campaign.Status.CANCELLED,
            action=actions.CAMPAIGN_CANCELLED,
            details={"blocked": blocked},
        )
    return campaign


def campaign_deliveries_cancel(*, campaign_id: int) -> int:
    """Block every queued delivery of a campaign with the reason campaign_cancelled; returns how many.

    A queued delivery still under a claim (its lease set and never released) was in a worker's batch: a worker
    that died after handing the message to the mail server and before recording it leaves exactly that. Such a
    row is marked `possible_duplicate` as well, as the reconciler marks a re-claimed one: "a message may have
    reached the mail server that this row does not record" (DESIGN.md: the delivery says so). A live worker
    between its claim and its send finds the row no longer queued and sends nothing, so the mark can only err
    on the side of saying "may have"."""
    if connection.vendor != "postgresql":  # SQLite: the IMMEDIATE transaction holds the database's write lock
        return Delivery.objects.filter(campaign_id=campaign_id, status=Delivery.Status.QUEUED).update(
            status=Delivery.Status.BLOCKED,
            block_reason=Delivery.BlockReason.CAMPAIGN_CANCELLED,
            possible_duplicate=Case(When(lease_expires_at__isnull=False, then=Value(True)), default=F("possible_duplicate")),
            lease_expires_at=None,
        )
    table = connection.ops.quote_name(Delivery._meta.db_table)
    with connection.cursor() as cursor:
        # The outer `status = queued` is re-checked on a row a sending batch committed meanwhile (READ COMMITTED
        # re-evaluates it on the newest version), so a message sent is never recorded as cancelled.
        cursor.execute(
            f"""
            UPDATE {table} AS d
               SET status = %s, block_reason = %s, lease_expires_at = NULL,
                   possible_duplicate = d.possible_duplicate OR d.lease_expires_at IS NOT NULL
             WHERE d.status = %s
               AND d.id IN (SELECT id FROM {table}
                             WHERE campaign_id = %s AND status = %s
                             ORDER BY id
                               FOR UPDATE)
            """,
            [
                Delivery.Status.BLOCKED,
                Delivery.BlockReason.CAMPAIGN_CANCELLED,
                Delivery.Status.QUEUED,
                campaign_id,
                Delivery.Status.QUEUED,
            ],
        )
        return cursor.rowcount


EDITABLE = {Campaign.Status.DRAFT, Campaign.Status.REJECTED, Campaign.Status.APPROVED}


_CONTENT_FIELDS = ("name", "purpose", "segment", "subject", "body_text", "template")


COMMENT_MAX_LENGTH = 2000


def campaign_create_draft(
    *,
    actor,
    name: str,
    purpose: Purpose,
    segment: Segment | None,
    subject: str,
    body_text: str,
    template: EmailTemplate | None = None,
    blocks: list[ContentBlock] | tuple = (),
) -> Campaign:
    """A new draft (campaigns.services.lifecycle.campaign_create), with its segment (None: every patient), its template
    and its blocks in order (approved ones only)."""
    with transaction.atomic(durable=True):
        campaign = campaign_create(
            actor=actor, name=name, purpose=purpose, subject=subject, body_text=body_text, template=template,
            blocks=blocks,
        )
        if segment is not None:
            campaign.segment = segment
            campaign.full_clean()
            Campaign.objects.filter(pk=campaign.pk).update(segment=segment)
            audit_record(
                actor=actor,
                action=actions.CAMPAIGN_SEGMENT_SET,
                object_type="campaign",
                object_id=campaign.pk,
                details={"segment": segment.pk},
            )
    return campaign


def campaign_update(
    *,
    actor,
    campaign_id: int,
    name: str,
    purpose: Purpose,
    segment: Segment | None,
    subject: str,
    body_text: str,
    template: EmailTemplate | None = None,
    blocks: list[ContentBlock] | tuple = (),
) -> Campaign:
    """Change a draft, rejected or approved campaign. Editing an approved campaign voids its approval: it is a
    draft again and must be submitted and approved anew. Submitted, scheduled, sending, sent and cancelled
    campaigns cannot be edited. Saving without any change changes nothing (and voids nothing). The content must
    pass campaigns.services.library.campaign_content_validate (approved template and blocks, merge fields only)."""
    blocks = list(blocks)
    with _campaign_locked(campaign_id, allowed=EDITABLE, cannot_be="edited") as campaign:
        new = {
            "name": name, "purpose": purpose, "segment": segment, "subject": subject, "body_text": body_text,
            "template": template,
        }
        changed = [field for field in _CONTENT_FIELDS if getattr(campaign, field) != new[field]]
        current_blocks = list(
            CampaignBlock.objects.filter(campaign=campaign).order_by("position").values_list("block_id", flat=True)
        )
        blocks_changed = current_blocks != [block.pk for block in blocks]
        if not changed and not blocks_changed:
            return campaign
        campaign_content_validate(
            CampaignContent(
                purpose=purpose, subject=subject, intro_text=body_text, template=template, blocks=tuple(blocks)
            )
        )
        for field in changed:
            setattr(campaign, field, new[field])
        previous = campaign.status
        voided = []
        if previous == Campaign.Status.APPROVED:
            # The approval is void: nobody has approved this version (the audit trail keeps who approved the last).
            campaign.status = Campaign.Status.DRAFT
            campaign.approved_by, campaign.approved_at = None, None
            voided = ["approved_by", "approved_at"]
        campaign.full_clean()
        campaign.save(update_fields=[*changed, "status", *voided])
        if blocks_changed:
            CampaignBlock.objects.filter(campaign=campaign).delete()
            CampaignBlock.objects.bulk_create(
                [CampaignBlock(campaign=campaign, block=block, position=index) for index, block in enumerate(blocks)]
            )
            changed.append("blocks")
        audit_record(
            actor=actor,
            action=actions.CAMPAIGN_UPDATED,
            object_type="campaign",
            object_id=campaign.pk,
            details={
                "changed": changed,
                "purpose": campaign.purpose_id,
                "segment": campaign.segment_id,
                **({"template": campaign.template_id} if "template" in changed else {}),
                **({"blocks": [block.pk for block in blocks]} if blocks_changed else {}),
            },
        )
        if previous == Campaign.Status.APPROVED:
            audit_record(
                actor=actor,
                action=actions.CAMPAIGN_APPROVAL_VOIDED,
                object_type="campaign",
                object_id=campaign.pk,
                details={"from": previous, "to": campaign.status},
            )
    return campaign


def campaign_reject(*, actor, campaign_id: int, comment: str) -> Campaign:
    """Send a submitted campaign back to its author with the reviewer's comment, stored on the campaign for the
    author to read (review_comment, reviewed_by, reviewed_at). The comment is required; the audit trail records
    only its length (free text never reaches the audit details)."""
    comment = comment.strip()
    if not comment:
        raise ValidationError(gettext("Say why the campaign is rejected: the comment is required."))
    if len(comment) > COMMENT_MAX_LENGTH:
        raise ValidationError(
            gettext("Keep the comment under %(most)s characters.") % {"most": COMMENT_MAX_LENGTH}
        )
    with _campaign_locked(campaign_id, allowed=(Campaign.Status.SUBMITTED,), cannot_be="rejected") as campaign:
        campaign_move(
            campaign,
            actor=actor,
            to=Campaign.Status.REJECTED,
            action=actions.CAMPAIGN_REJECTED,
            details={"comment_length": len(comment)},
            clean=True,
            review_comment=comment,
            reviewed_by=actor,
            reviewed_at=timezone.now(),
        )
        campaign_rejected_notify(campaign=campaign, actor=actor, comment=comment)  # the author, with the comment
    return campaign
