"""Opt-in open and click tracking, for purposes that turn it on (consent.Purpose.tracking_enabled, off by default).

What it records: the first time a recipient's mail client loads the message's images (`Delivery.opened_at`) and
the first time they follow a link in it (`Delivery.clicked_at`; a click counts as an open too, since many
clients block images). Nothing else: no address, no user agent, no IP, no cookie, no count of repeats. Marketers
see them only as aggregates (campaigns.selectors.results).

Render once, substitute per recipient (campaigns.sending.messages). `tracking_apply` rewrites a campaign's rendered HTML
once per batch: each http(s) link of the content becomes `/t/c/<recipient>/<link>/` and a 1x1 image
`/t/o/<recipient>.gif` is appended, where <recipient> is a per-batch placeholder that `TrackedHtml.token_for`
replaces with each recipient's signed token (one HMAC per message, like the unsubscribe token), and <link> is
the target URL signed once per batch together with the campaign's id. So:

- no PHI in URLs: a recipient token names a delivery id and nothing else; a link token names the campaign and a
  URL from its approved content (links that carry a merge field are left as they are, never signed);
- no open redirect: the click endpoint redirects only to a URL we signed, i.e. one the campaign's content held;
- the tokens use salts of their own: a tracking token cannot unsubscribe anybody, nor the other way round;
- links to this site (the one-click unsubscribe, the portal) and mailto:/tel: links are left alone.

The endpoints (campaigns.views.tracking) record through `delivery_open_record` and `delivery_click_record`,
which change nothing unless the delivery was sent and its purpose tracks, and only the first time.
"""
import html
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.db.models.functions import Coalesce, Now
from django.urls import reverse

from campaigns.models import Delivery

_RECIPIENT_SALT = "campaigns.sending.tracking.recipient"
_LINK_SALT = "campaigns.sending.tracking.link"
# Longer targets are left untracked rather than make a URL some mail clients cut.
MAX_TRACKED_URL = 1500

_ANCHOR = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
_HREF = re.compile(r"""(\shref\s*=\s*)(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def _recipient_signer() -> signing.Signer:
    return signing.Signer(salt=_RECIPIENT_SALT)


def tracking_token(delivery_id: int) -> str:
    """A signed token naming one delivery and nothing else."""
    return _recipient_signer().sign(str(delivery_id))


def tracking_token_read(token: str) -> int | None:
    try:
        return int(_recipient_signer().unsign(token))
    except (signing.BadSignature, ValueError):
        return None


def link_token(*, campaign_id: int, url: str) -> str:
    """The target of a tracked link, signed with the campaign it belongs to (made once per batch)."""
    return signing.Signer(salt=_LINK_SALT).sign_object({"c": campaign_id, "u": url}, compress=True)


def link_token_read(token: str) -> tuple[int, str] | None:
    """(campaign id, target URL) of a link token we made, or None (forged, altered, or not an http(s) URL)."""
    try:
        value = signing.Signer(salt=_LINK_SALT).unsign_object(token)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("c"), int) or not isinstance(value.get("u"), str):
        return None
    if not _trackable_scheme(value["u"]):  # defence in depth: only http(s) was ever signed
        return None
    return value["c"], value["u"]


def _trackable_scheme(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def _site_url() -> str:
    return settings.SITE_URL.rstrip("/")


def click_url(*, recipient: str, link: str) -> str:
    return _site_url() + reverse("tracking:click", kwargs={"token": recipient, "link": link})


def open_url(*, recipient: str) -> str:
    return _site_url() + reverse("tracking:open", kwargs={"token": recipient})


@dataclass(frozen=True)
class TrackedHtml:
    """A campaign's HTML with tracking, or as it was (`placeholder` None) when the purpose does not track."""

    html: str
    placeholder: str | None = None
    links: int = 0  # how many links were rewritten
    _signer: signing.Signer = field(default_factory=_recipient_signer, repr=False, compare=False)

    def token_for(self, delivery_id: int) -> str:
        """What replaces `placeholder` in one recipient's message (the same as `tracking_token`)."""
        return self._signer.sign(str(delivery_id))

    def for_recipient(self, document: str, *, delivery_id: int) -> str:
        """`document` (this HTML, other placeholders already filled or not) for one recipient: one substitution."""
        if self.placeholder is None:
            return document
        return document.replace(self.placeholder, self.token_for(delivery_id))


def tracking_apply(document: str, *, campaign, keep: Iterable[str] = ()) -> TrackedHtml:
    """Rewrite a campaign's rendered HTML for tracking, once per batch; unchanged unless the campaign is saved and
    its purpose has tracking turned on. `keep`: the other per-recipient placeholders in the document (the
    unsubscribe URL's, the merge fields'): a link containing one is left as it is, so no patient value is ever
    signed into a URL and the placeholders stay where the sender substitutes them."""
    if campaign.pk is None or not campaign.purpose.tracking_enabled:
        return TrackedHtml(html=document)
    keep = [value for value in keep if value]
    placeholder = "hmtrack" + secrets.token_hex(16)
    site = _site_url() + "/"
    signed: dict[str, str] = {}
    rewritten = 0

    def href(match: re.Match) -> str:
        nonlocal rewritten
        raw = match.group(2) if match.group(2) is not None else match.group(3)
        url = html.unescape(raw).strip()
        if (
            any(value in raw or value in url for value in keep)
            or not _trackable_scheme(url)
            or url.startswith(site)
            or len(url) > MAX_TRACKED_URL
        ):
            return match.group(0)
        if url not in signed:
            signed[url] = link_token(campaign_id=campaign.pk, url=url)
        rewritten += 1
        return f'{match.group(1)}"{html.escape(click_url(recipient=placeholder, link=signed[url]), quote=True)}"'

    def anchor(match: re.Match) -> str:
        return _HREF.sub(href, match.group(0), count=1)

    document = _ANCHOR.sub(anchor, document)
    pixel = (
        f'<img src="{html.escape(open_url(recipient=placeholder), quote=True)}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0;">'
    )
    ends = list(_BODY_END.finditer(document))
    if ends:
        at = ends[-1].start()
        document = document[:at] + pixel + document[at:]
    else:
        document += pixel
    return TrackedHtml(html=document, placeholder=placeholder, links=rewritten)


# --- Recording (the public endpoints call these) ------------------------------------------------------------


def _trackable(delivery_id: int):
    """The delivery, if it was sent and its purpose tracks; as a queryset, for one conditional UPDATE."""
    return Delivery.objects.filter(
        pk=delivery_id, status=Delivery.Status.SENT, campaign__purpose__tracking_enabled=True
    )


def delivery_open_record(*, delivery_id: int) -> bool:
    """The first open, in the database's clock; True when this call recorded it. Later opens change nothing."""
    return bool(_trackable(delivery_id).filter(opened_at__isnull=True).update(opened_at=Now()))


def delivery_click_record(*, delivery_id: int, campaign_id: int) -> bool:
    """The first click on a link of this delivery's campaign (a link token of another campaign records nothing);
    it counts as the open too when none was recorded (images blocked). True when this call recorded it."""
    return bool(
        _trackable(delivery_id)
        .filter(campaign_id=campaign_id, clicked_at__isnull=True)
        .update(clicked_at=Now(), opened_at=Coalesce("opened_at", Now()))
    )
