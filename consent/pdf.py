"""The PDF copy of a signed authorization (R-AUTH-COPY), rendered with WeasyPrint.

Its text is exactly the document text the patient was shown (consent.documents.form_text), paragraph for
paragraph, followed by the signature block: name, date, the representative's authority, and the SHA-256 of
the text, which identifies what was signed. Nothing is fetched from the network while rendering.

Every PDF the product writes (this copy and the compliance reports, campaigns.reports.exports) goes through
`pdf_write`: a tagged PDF/UA-1 (ISO 14289-1) whose structure tree follows the HTML (headings, paragraphs, tables),
so a screen reader reads it in order, with its metadata: title, author (the organisation), subject and language.
WeasyPrint 70 writes PDF/UA with `pdf_variant="pdf/ua-1"`, but tags only with `pdf_tags=True` as well (its variant
defaults fill options left at None, and pdf_tags defaults to False). The metadata holds ids and codes only, never a
patient's name: a PDF's info dictionary is read by file indexes and previews (R-NO-PHI-LEAK).
"""
from datetime import datetime
from functools import lru_cache

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _
from weasyprint import HTML, URLFetcher

from consent.documents import form_sections
from consent.models import AuthorizationForm, Language


@lru_cache(maxsize=1)
def _section_headings() -> frozenset[str]:
    """The headings form_text writes, in every language, learnt from the one renderer rather than copied from it."""
    headings: set[str] = set()
    for language in Language.values:
        probe = AuthorizationForm(expiry_kind=AuthorizationForm.ExpiryKind.MONTHS, expiry_months=1, language=language)
        for field in AuthorizationForm._meta.get_fields():
            if getattr(field, "get_internal_type", lambda: "")() == "TextField":
                setattr(probe, field.name, "x")
        headings |= {heading for heading, _text in form_sections(probe)}
    return frozenset(headings)


def document_blocks(document_text: str) -> list[dict]:
    """The document as paragraphs, in order; a paragraph that opens with a section heading of form_text
    carries it as `heading`. Every character of the text is kept."""
    headings = _section_headings()
    blocks = []
    paragraphs = [paragraph for paragraph in document_text.strip().split("\n\n") if paragraph.strip()]
    for index, paragraph in enumerate(paragraphs):
        first, _, rest = paragraph.partition("\n")
        if index == 0:
            blocks.append({"title": paragraph})
        elif rest and first in headings:
            blocks.append({"heading": first, "text": rest})
        else:
            blocks.append({"text": paragraph})
    return blocks


def authorization_pdf_render(
    *,
    document_text: str,
    signature_name: str,
    signed_date: str,
    signed_by_representative: bool,
    representative_authority: str,
    text_hash: str,
    expires_at: datetime | None = None,
    expiry_event: str = "",
    language: str = Language.ENGLISH,
) -> bytes:
    """The copy, in the language of the form signed. Under the signature it states when the authorization ends: the
    exact date, as the portal shows it (the `when` filter), or the event that ends it (issue 17, item 5)."""
    with translation.override(language):
        html = render_to_string(
            "consent/pdf/authorization.html",
            {
                "language": language,
                "blocks": document_blocks(document_text),
                "signature_name": signature_name,
                "signed_date": signed_date,
                "signed_by_representative": signed_by_representative,
                "representative_authority": representative_authority,
                "text_hash": text_hash,
                "expires_at": expires_at,
                "expiry_event": expiry_event,
            },
        )
        subject = _(
            "Your copy of the authorization you signed, exactly as it was shown to you; the text signed has the "
            "SHA-256 fingerprint %(hash)s."
        ) % {"hash": text_hash}
        return pdf_write(html, title=_title(document_text), subject=subject, language=language)


def _title(document_text: str) -> str:
    """The form's own title (the document's first paragraph), which names the purpose, never the patient."""
    blocks = document_blocks(document_text)
    first = blocks[0].get("title", "") if blocks else ""
    return " ".join(first.split()) or _("Signed authorization")


PDF_VARIANT = "pdf/ua-1"
PDF_LANGUAGE = "en"  # the compliance reports are written in English; a signed copy is in its form's language


class _NoFetch(URLFetcher):
    """Refuses every URL and stops the rendering: the templates are self-contained, and a PDF that would need
    something from outside is a bug, never a request to the network."""

    def __init__(self):
        super().__init__(fail_on_errors=True)

    def fetch(self, url, headers=None):
        raise ValueError("A PDF of hipaamail loads no outside resource.")


def pdf_write(html: str, *, title: str, subject: str, language: str = PDF_LANGUAGE) -> bytes:
    """A tagged PDF/UA-1 of self-contained HTML, with its title, author (the organisation), subject and language."""
    options = {"pdf_variant": PDF_VARIANT, "pdf_tags": True}
    document = HTML(string=html, url_fetcher=_NoFetch()).render(**options)
    document.metadata.title = title
    document.metadata.authors = [settings.HIPAAMAIL_ORGANISATION_NAME]
    document.metadata.description = subject
    document.metadata.lang = language
    document.metadata.generator = "hipaamail"
    return document.write_pdf(**options)
