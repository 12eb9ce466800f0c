"""Reads back what makes a PDF accessible (PDF/UA-1, ISO 14289-1), for the tests of every PDF the product writes:
the catalog's structure tree, MarkInfo and language, the info dictionary's title, author and subject, and the XMP
metadata's PDF/UA part. pdfminer.six reads it (pure Python, as conftest.pdf_text)."""
import io
from dataclasses import dataclass

from pdfminer.pdfdocument import PDFDocument
from pdfminer.pdfparser import PDFParser
from pdfminer.pdftypes import PDFObjRef, resolve1
from pdfminer.psparser import PSLiteral


@dataclass(frozen=True)
class PdfAccessibility:
    marked: bool
    lang: str
    display_doc_title: bool
    structure_types: frozenset[str]  # every /S of the structure tree: Document, H1, P, Table, TH, TD...
    title: str
    author: str
    subject: str
    pdfua_part: str  # from the XMP metadata: "1" for PDF/UA-1


def _text(value) -> str:
    value = resolve1(value)
    if isinstance(value, bytes):
        if value.startswith(b"\xfe\xff"):
            return value[2:].decode("utf-16-be")
        return value.decode("latin-1")
    return "" if value is None else str(value)


def _name(value) -> str:
    value = resolve1(value)
    return value.name if isinstance(value, PSLiteral) else _text(value)


def _structure_types(root) -> frozenset[str]:
    found, seen, stack = set(), set(), [root.get("K")]
    while stack:
        item = stack.pop()
        if isinstance(item, PDFObjRef):
            if item.objid in seen:
                continue
            seen.add(item.objid)
        item = resolve1(item)
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if "S" in item:
                found.add(_name(item["S"]))
            if "K" in item:
                stack.append(item["K"])
    return frozenset(found)


def pdf_accessibility(content: bytes) -> PdfAccessibility:
    document = PDFDocument(PDFParser(io.BytesIO(content)))
    catalog = document.catalog
    info = document.info[-1] if document.info else {}
    structure_root = resolve1(catalog.get("StructTreeRoot")) or {}
    metadata = resolve1(catalog.get("Metadata"))
    xmp = metadata.get_data().decode() if metadata is not None else ""
    part = xmp.split('pdfuaid:part="', 1)[1].split('"', 1)[0] if 'pdfuaid:part="' in xmp else ""
    return PdfAccessibility(
        marked=bool((resolve1(catalog.get("MarkInfo")) or {}).get("Marked")),
        lang=_text(catalog.get("Lang")),
        display_doc_title=bool((resolve1(catalog.get("ViewerPreferences")) or {}).get("DisplayDocTitle")),
        structure_types=_structure_types(structure_root) if structure_root else frozenset(),
        title=_text(info.get("Title")),
        author=_text(info.get("Author")),
        subject=_text(info.get("Subject")),
        pdfua_part=part,
    )
