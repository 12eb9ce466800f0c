"""The sender's two shortcuts give the same bytes as the long way (bench: they are its largest costs per message
after the socket).

- campaigns.sending.messages._QuotedPrintableBody encodes a body template's unchanging lines once per render and
  only the lines with a per-recipient placeholder per message: the result must be `_qp` of the whole substituted
  body, whatever the text (line breaks of every kind, long lines, trailing white space, non-ASCII).
- campaigns.sending.transport._quoted skips smtplib.quoteaddr's parse for a plain address: the result must be
  quoteaddr's for every string.
"""
import smtplib

from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.sending.messages import _qp, _QuotedPrintableBody, _substituted
from campaigns.sending.transport import _quoted

PLACEHOLDERS = ["hmunsubAAAA", "hmfieldBBBB", "hmtrackCCCC"]

# Pieces that stress quoted-printable: each kind of line break, white space before a break, '=' and '.', a
# 76-character boundary, non-ASCII of two, three and four bytes.
pieces = st.sampled_from(
    ["\r\n", "\n", "\r", " ", "\t", " \n", "\t\r\n", "=", ".", "From ", "é", "€", "𝄞", "a" * 75, "b" * 80, "x", ""]
)
text = st.lists(st.one_of(pieces, st.text(max_size=8), st.sampled_from(PLACEHOLDERS)), max_size=40).map("".join)
# Values never carry a line break (a merge value is made one line; the links are the product's own).
values = st.one_of(
    st.text(st.characters(blacklist_characters="\r\n"), max_size=90),
    st.sampled_from(["", " ", "a" * 100, "trailing ", "ünïcödé", "=3D"]),
)


@settings(max_examples=800, deadline=None, derandomize=True)
@given(template=text, substitutes=st.lists(values, min_size=3, max_size=3))
def test_a_body_encoded_line_by_line_is_the_whole_body_encoded(template, substitutes):
    pairs = list(zip(PLACEHOLDERS, substitutes))
    body = _QuotedPrintableBody(template, PLACEHOLDERS)
    assert body.encode(pairs) == _qp(_substituted(template, pairs))


def test_unchanging_lines_are_encoded_once_and_kept():
    template = "Dear patient,\n\n" + "A long paragraph about flu clinics. " * 8 + "\n\nStop: hmunsubAAAA\nThanks\n"
    body = _QuotedPrintableBody(template, PLACEHOLDERS)
    assert [type(segment) for segment in body.segments] == [bytes, str, bytes]
    assert body.segments[1] == "Stop: hmunsubAAAA\r\n"


addresses = st.one_of(
    st.emails(),
    st.text(alphabet="abcXYZ09.-_+=!#$%&'*/?^`{|}~@ \"<>()[],;:\\é", max_size=30),
    st.text(max_size=20),
)


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(address=addresses)
def test_an_address_is_quoted_as_smtplib_quotes_it(address):
    assert _quoted(address) == smtplib.quoteaddr(address)


def test_a_plain_address_skips_the_parse(monkeypatch):
    calls = []
    monkeypatch.setattr(smtplib, "quoteaddr", lambda address: calls.append(address) or f"<{address}>")
    assert _quoted("pat.one+flu@clinic.example.org") == "<pat.one+flu@clinic.example.org>"
    assert calls == []
    _quoted("Pat <pat@clinic.example>")  # not a bare address: quoteaddr decides
    assert calls == ["Pat <pat@clinic.example>"]
