"""Our stylesheets are well formed: every block closed where it should be. Two @media blocks left open by merges
once put every rule after them (the review loop, the patient pages, the skip link, the phone menu) inside a
max-width query, so at 1280 px they silently did not apply; the pages still passed axe and the width checks."""
import re
from pathlib import Path

import pytest
from django.conf import settings

STYLESHEETS = sorted((Path(settings.BASE_DIR) / "static").rglob("*.css"))


def unclosed_blocks(css: str) -> list[str]:
    """The openings ("line N: selector") of blocks a stylesheet never closes, and of closings it has too many of."""
    text = re.sub(r"/\*.*?\*/", lambda match: re.sub(r"[^\n]", " ", match.group()), css, flags=re.S)
    text = re.sub(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'", lambda match: " " * len(match.group()), text)
    open_blocks, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        for position, character in enumerate(line):
            if character == "{":
                open_blocks.append(f"line {number}: {line[:position].strip()[:60]}")
            elif character == "}":
                if open_blocks:
                    open_blocks.pop()
                else:
                    problems.append(f"line {number}: a closing brace with nothing open")
    return problems + open_blocks


def test_the_check_finds_an_unclosed_media_query():
    css = "@media (max-width: 40rem) {\n  .a { color: red; }\n/* a comment { */\n.b { content: '}'; }\n"
    assert unclosed_blocks(css) == ["line 1: @media (max-width: 40rem)"]
    assert unclosed_blocks("@media print { .a { color: red; } }\n.b { margin: 0; }") == []


@pytest.mark.parametrize("stylesheet", STYLESHEETS, ids=lambda path: path.name)
def test_every_block_of_a_stylesheet_is_closed(stylesheet):
    assert unclosed_blocks(stylesheet.read_text(encoding="utf-8")) == []
