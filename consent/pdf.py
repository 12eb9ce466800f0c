"""The PDF copy of a signed authorization (R-AUTH-COPY), rendered with WeasyPrint.

Its text is exactly the document text the patient was shown (consent.documents.form_text), paragraph for
paragraph, followed by the signature block: name, date, the representative's authority, and the SHA-256 of
the text, which identifies what was signed. Nothing is fetched from the network while rendering.
"""
from functools import lru_cache

from django.template.loader import render_to_string
from weasyprint import HTML

from consent.documents import form_sections
from consent.models import AuthorizationForm


@lru_cache(maxsize=1)
def _section_headings() -> frozenset[str]:
    """The headings form_text writes, learnt from the one renderer rather than copied from it."""
    probe = AuthorizationForm(expiry_kind=AuthorizationForm.ExpiryKind.MONTHS, expiry_months=1)
    for field in AuthorizationForm._meta.get_fields():
        if getattr(field, "get_internal_type", lambda: "")() == "TextField":
            setattr(probe, field.name, "x")
    return frozenset(heading for heading, _ in form_sections(probe))


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
) -> bytes:
    html = render_to_string(
        "consent/pdf/authorization.html",
        {
            "blocks": document_blocks(document_text),
            "signature_name": signature_name,
            "signed_date": signed_date,
            "signed_by_representative": signed_by_representative,
            "representative_authority": representative_authority,
            "text_hash": text_hash,
        },
    )
    # No base_url and a fetcher that refuses everything: the template is self-contained.
    return HTML(string=html, url_fetcher=_no_fetch).write_pdf()


def _no_fetch(url: str, timeout: int = 10, ssl_context=None):
    raise ValueError("The authorization PDF loads no outside resource.")
