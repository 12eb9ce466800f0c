"""Notices of the review loop (issue 17): in the product (campaigns.models.Notice, the notices page and the count in
the navigation) and by email, to the staff member concerned:

- submitted: every active compliance officer and administrator but the author (someone must review it);
- approved, rejected (with the reviewer's comment), sent: the campaign's author;
- a journey version's submitted, approved and rejected, the same way (journeys.services.journeys calls
  `journey_submitted_notify` and the others in its transaction, with the version's name and the path to open:
  campaigns may not import journeys). A journey is never "sent".

Nobody is told of their own action (an administrator who submits their own campaign is not asked to review it).
The notices are written in the transaction of the change they report, so both commit or neither; their email
is queued after the commit (transaction.on_commit) for a worker on the "transactional" queue
(campaigns.tasks.notice_mail_send_task), which sends it through Django's mail backend as the other staff mail does
(audit.mail), one message per person, written in that person's language (accounts.language, ADR 0030). A failed send is logged by its error's type and
never undoes the change. The mail names the campaign or journey version, who acted and the reviewer's comment (prose
about content, never about a patient) with a link to it: no patient, no count of patients (R-NO-PHI-LEAK).

This module stands apart from campaigns.services so that the sender (campaigns.sending, which may not import the
services) can report a campaign sent: campaigns.sending.dispatch.campaign_finish_if_done calls
`campaign_sent_notify` in its transaction.
"""
import logging
from collections.abc import Iterable

from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation

from accounts import roles
from accounts.language import staff_language
from audit.mail import staff_mail_send
from campaigns.models import Campaign, Notice

logger = logging.getLogger(__name__)

REVIEWER_ROLES = (roles.COMPLIANCE_OFFICER, roles.ADMINISTRATOR)


def reviewer_list(*, exclude_user_id: int | None = None) -> list:
    """Active compliance officers and administrators (and superusers), each once, by id."""
    users = (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(groups__name__in=REVIEWER_ROLES) | Q(is_superuser=True))
        .distinct()
        .order_by("id")
    )
    if exclude_user_id is not None:
        users = users.exclude(pk=exclude_user_id)
    return list(users)


def _notify(
    *,
    kind: str,
    actor,
    recipients: Iterable,
    comment: str = "",
    campaign: Campaign | None = None,
    subject: str = "",
    link: str = "",
) -> list[Notice]:
    """Write one notice per recipient (never the actor) about the campaign, or (with no campaign) the journey named
    `subject` at `link`, and mail them after the commit."""
    about = Notice.About.CAMPAIGN if campaign is not None else Notice.About.JOURNEY
    actor_id = getattr(actor, "pk", None)
    notices = [
        Notice(
            recipient=recipient, about=about, campaign=campaign, subject=subject, link=link, kind=kind, actor=actor,
            comment=comment,
        )
        for recipient in recipients
        if recipient is not None and recipient.pk != actor_id and recipient.is_active
    ]
    if not notices:
        return []
    Notice.objects.bulk_create(notices)
    ids = [notice.pk for notice in notices]
    transaction.on_commit(lambda: _notice_mail_queue(ids))
    return notices


def _campaign_notify(*, campaign: Campaign, kind: str, actor, recipients: Iterable, comment: str = "") -> list[Notice]:
    """A journey's step campaigns are reviewed with their journey version, not one by one: they get none."""
    if campaign.kind != Campaign.Kind.CAMPAIGN:
        return []
    return _notify(campaign=campaign, kind=kind, actor=actor, recipients=recipients, comment=comment)


def _notice_mail_queue(notice_ids: list[int]) -> None:
    """To a worker, by the task's name (the tasks module imports the sender, which imports this module)."""
    if settings.HIPAAMAIL_TRANSACTIONAL_MAIL_EAGER:
        notice_mail_send(notice_ids=notice_ids)  # the test suite: in-process, into its locmem outbox
    else:
        current_app.send_task("campaigns.tasks.notice_mail_send_task", args=[notice_ids])


def campaign_submitted_notify(*, campaign: Campaign, actor) -> list[Notice]:
    return _campaign_notify(
        campaign=campaign,
        kind=Notice.Kind.SUBMITTED,
        actor=actor,
        recipients=reviewer_list(exclude_user_id=actor.pk),
    )


def campaign_approved_notify(*, campaign: Campaign, actor) -> list[Notice]:
    return _campaign_notify(campaign=campaign, kind=Notice.Kind.APPROVED, actor=actor, recipients=[campaign.created_by])


def campaign_rejected_notify(*, campaign: Campaign, actor, comment: str) -> list[Notice]:
    return _campaign_notify(
        campaign=campaign, kind=Notice.Kind.REJECTED, actor=actor, recipients=[campaign.created_by], comment=comment
    )


def campaign_sent_notify(*, campaign: Campaign) -> list[Notice]:
    """The campaign finished sending (every delivery sent, blocked or failed): its author is told. A journey's
    step campaign never finishes, so it never gets here."""
    return _campaign_notify(campaign=campaign, kind=Notice.Kind.SENT, actor=None, recipients=[campaign.created_by])


# A journey version's review. `subject` is the version as people know it ("CPAP welcome · v2"), `link` the path of the
# page to open (its review page for the reviewers, the journey's page for its author): the journeys app gives both.


def journey_submitted_notify(*, subject: str, link: str, actor) -> list[Notice]:
    return _notify(
        kind=Notice.Kind.SUBMITTED,
        actor=actor,
        recipients=reviewer_list(exclude_user_id=actor.pk),
        subject=subject,
        link=link,
    )


def journey_approved_notify(*, subject: str, link: str, actor, author) -> list[Notice]:
    return _notify(kind=Notice.Kind.APPROVED, actor=actor, recipients=[author], subject=subject, link=link)


def journey_rejected_notify(*, subject: str, link: str, actor, author, comment: str) -> list[Notice]:
    return _notify(
        kind=Notice.Kind.REJECTED, actor=actor, recipients=[author], comment=comment, subject=subject, link=link
    )


# --- In the product ---------------------------------------------------------------------------------------------


def notice_list(*, user):
    """The user's notices, newest first, with their campaign (if any) and who acted."""
    return (
        Notice.objects.filter(recipient=user)
        .select_related("campaign", "actor")
        .order_by("-created_at", "-id")
    )


def notice_unread_count(*, user) -> int:
    if not getattr(user, "is_authenticated", False):
        return 0
    return Notice.objects.filter(recipient=user, read_at__isnull=True).count()


def notice_mark_read(*, user, notice_id: int | None = None) -> int:
    """Mark one of the user's notices read (or all of them, with no id); another's notice is never touched.
    Returns how many changed."""
    notices = Notice.objects.filter(recipient=user, read_at__isnull=True)
    if notice_id is not None:
        notices = notices.filter(pk=notice_id)
    return notices.update(read_at=timezone.now())


# --- By email ---------------------------------------------------------------------------------------------------

_TEMPLATE = "campaigns/email/notice"


def notice_path(notice: Notice) -> str:
    """The page the notice's mail opens: a journey notice's own link; for a campaign, its review page when the
    notice asks for a review, else the campaign's page."""
    if notice.about == Notice.About.JOURNEY:
        return notice.link
    name = "campaigns:campaign_review" if notice.kind == Notice.Kind.SUBMITTED else "campaigns:detail"
    return reverse(name, args=[notice.campaign_id])


def notice_mail_context(notice: Notice) -> dict:
    return {
        "notice": notice,
        "kind": notice.kind,
        "about": notice.about,
        "campaign_name": notice.name,
        "journey_name": notice.name,
        "actor_email": notice.actor.email if notice.actor else "",
        "comment": notice.comment,
        "url": settings.SITE_URL.rstrip("/") + notice_path(notice),
        "notices_url": settings.SITE_URL.rstrip("/") + reverse("campaigns:notice_list"),
        "organisation_name": settings.HIPAAMAIL_ORGANISATION_NAME,
    }


def notice_mail_render(notice: Notice) -> tuple[str, str, str]:
    """(subject, text, html) from the triplet campaigns/email/notice.subject.txt | .txt | .html."""
    context = notice_mail_context(notice)
    name = _TEMPLATE
    subject = " ".join(render_to_string(f"{name}.subject.txt", context).split())
    return subject, render_to_string(f"{name}.txt", context), render_to_string(f"{name}.html", context)


def notice_mail_send(*, notice_ids: list[int]) -> int:
    """Mail each notice to its recipient's address; returns how many the mail server took. Marked
    `Auto-Submitted: auto-generated` (audit.mail, as every mail to staff). With
    settings.HIPAAMAIL_NOTICE_EMAIL off (env NOTICE_EMAIL) the notices stay in the product only."""
    if not settings.HIPAAMAIL_NOTICE_EMAIL:
        return 0
    sent = 0
    notices = Notice.objects.filter(pk__in=notice_ids).select_related("campaign", "actor", "recipient")
    for notice in notices.order_by("id"):
        if not notice.recipient.email:
            continue
        with translation.override(staff_language(notice.recipient_id)):
            subject, text, html = notice_mail_render(notice)
        sent += staff_mail_send(
            address=notice.recipient.email, subject=subject, text=text, html=html, what="campaigns: a review notice"
        )
    return sent
