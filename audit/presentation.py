"""The audit trail as HTML for people, for the audit log and a patient's history (which campaigns composes): each
event a sentence (audit.sentences) with its time, a link to what it is about, and its stored details in a
collapsible part, so that no row is wider than a phone's screen."""
from django.urls import reverse
from django.utils import dateformat, timezone, translation
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _

from audit import naming, sentences

LIST_PREVIEW = 8  # ids shown of a long list in details; the count says how many there are


def cursor_param(request, name: str) -> int | None:
    """A page cursor (an event id) from the query string; anything else is ignored."""
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() and len(value) < 19 else None


def _detail_text(value) -> str:
    if isinstance(value, list):
        shown = ", ".join(_detail_text(item) for item in value[:LIST_PREVIEW])
        return _("%(shown)s, … (%(count)d in all)") % {"shown": shown, "count": len(value)} if len(value) > LIST_PREVIEW else shown
    if isinstance(value, dict):
        return "; ".join(f"{sentences.detail_label(str(key))} {_detail_text(item)}" for key, item in value.items())
    if value is None:
        return "—"
    if value is True or value is False:
        return _("yes") if value else _("no")
    return str(value)


def _link_pattern(name: str) -> str:
    """A URL pattern with one integer argument as a format string, reversed once per page, not once per row."""
    return reverse(name, args=[987654321]).replace("987654321", "{}")


# `{{ value|when:"seconds" }}`'s formats (hipaamail/templatetags/when.py; the audit app cannot import the top layer,
# and hipaamail/tests/test_when.py checks that the two agree in every language).
WHEN_FORMATS = {"en": "M j, Y, g:i:s A T", "es": "j b Y, g:i:s A T"}


def _when(event) -> str:
    # The organisation's zone (settings.TIME_ZONE), named, in the reader's language.
    language = (translation.get_language() or "en").split("-")[0]
    return dateformat.format(timezone.localtime(event.occurred_at), WHEN_FORMATS.get(language, WHEN_FORMATS["en"]))


def event_rows(events, *, viewer=None) -> list[str]:
    """One <li> per event, every value escaped here. Built in Python rather than in a template loop: a page is 50
    events, and Django's template engine resolving that many lookups cost more than the page's queries (measured
    with bench/audit_scale.py)."""
    events = list(events)
    names = naming.names_for(events, viewer=viewer)
    campaign_url, history_url = _link_pattern("campaigns:detail"), _link_pattern("audit:patient_history")
    rows = []
    for event in events:
        words = sentences.event_words(event, names)
        links = []
        if event.object_type == "campaign" and event.object_id.isdigit():
            links.append(f'<a href="{campaign_url.format(event.object_id)}">{escape(_("Open the campaign"))}</a>')
        if event.patient_id:
            links.append(
                f'<a href="{history_url.format(event.patient_id)}">'
                f"{escape(_('History of patient #%(id)s') % {'id': event.patient_id})}</a>"
            )
        about = escape(_("About: %(object)s") % {"object": words.object}) if event.object_type else ""
        if event.details:
            items = "".join(
                f"<div><dt>{escape(sentences.detail_label(str(key)))}</dt><dd>{escape(_detail_text(value))}</dd></div>"
                for key, value in event.details.items()
            )
        else:
            items = ""
        origin = []
        if event.ip:
            origin.append(f"<div><dt>{escape(_('from address'))}</dt><dd>{escape(event.ip)}</dd></div>")
        if event.request_id:
            origin.append(f"<div><dt>{escape(_('request'))}</dt><dd>{escape(event.request_id)}</dd></div>")
        stored = (
            f"<div><dt>{escape(_('recorded as'))}</dt><dd><code>{escape(event.action)}</code></dd></div>"
            + (f"<div><dt>{escape(_('role'))}</dt><dd>{escape(event.actor_role)}</dd></div>" if event.actor_role else "")
        )
        if event.sequence is not None:
            chained = escape(_("Chained as entry %(sequence)s") % {"sequence": event.sequence})
            stored += f"<div><dt>{escape(_('hash'))}</dt><dd><code>{escape(event.hash)}</code></dd></div>"
        else:
            chained = escape(_("Recorded; being chained"))
        rows.append(mark_safe(  # noqa: S308 - every value above is escaped or a number
            f'<li class="event" data-action="{escape(event.action)}" data-kind="{escape(sentences.kind_of(event.action))}">'
            f'<p class="sentence">{escape(words.sentence(event.action))}</p>'
            f'<p class="meta"><span class="when">{escape(_when(event))}</span>'
            + (f'<span class="about">{about}</span>' if about else "")
            + "".join(f"<span>{link}</span>" for link in links)
            + f'<span class="seq">{chained}</span></p>'
            f'<details><summary>{escape(_("Details"))}</summary><dl class="event-details">{items}{"".join(origin)}{stored}</dl></details>'
            "</li>"
        ))
    return rows
