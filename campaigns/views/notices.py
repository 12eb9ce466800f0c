"""The review loop's notices in the product (issue 17): each staff member's own notices, newest first, 50 a page;
opening one marks it read and goes to its campaign (the review page for a reviewer asked to review, else the
campaign page) or to its journey (the path the notice keeps: the review page, or the journey's page); "mark as
read" for one or all. Only the recipient ever sees or changes a notice: another's is a 404 (campaigns.notices)."""
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST, require_safe

from accounts.roles import sees_patient_evidence
from campaigns import notices
from campaigns.models import Campaign, Notice


def _target(notice: Notice, user) -> str:
    if notice.about == Notice.About.JOURNEY:
        # A path on this site (the database refuses anything else); checked again, as every redirect is.
        if not url_has_allowed_host_and_scheme(notice.link, allowed_hosts=None):
            raise Http404
        return notice.link
    campaign = notice.campaign
    if (
        notice.kind == Notice.Kind.SUBMITTED
        and campaign.status == Campaign.Status.SUBMITTED
        and sees_patient_evidence(user)
    ):
        return reverse("campaigns:campaign_review", args=[campaign.pk])
    return reverse("campaigns:detail", args=[campaign.pk])


@require_safe
def notice_list_page(request):
    page = Paginator(notices.notice_list(user=request.user), 50).get_page(request.GET.get("page"))
    return render(request, "campaigns/notices/list.html", {"page": page})


@require_safe
def notice_open(request, notice_id: int):
    notice = notices.notice_list(user=request.user).filter(pk=notice_id).first()
    if notice is None:
        raise Http404
    target = _target(notice, request.user)
    notices.notice_mark_read(user=request.user, notice_id=notice.pk)
    return redirect(target)


@require_POST
def notice_read(request):
    """Mark as read: the notice named in the form (one of the user's own), or all of them ("all")."""
    which = request.POST.get("notice", "")
    if which == "all":
        notices.notice_mark_read(user=request.user)
    elif which.isascii() and which.isdigit() and len(which) <= 18:  # a bigint; anything else changes nothing
        notices.notice_mark_read(user=request.user, notice_id=int(which))
    return redirect("campaigns:notice_list")
