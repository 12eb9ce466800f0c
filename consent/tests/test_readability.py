"""The Flesch-Kincaid grade behind the plain-language warning (R-AUTH-PLAIN)."""
import pytest

from consent.readability import (
    PLAIN_LANGUAGE_GRADE_LIMIT,
    flesch_kincaid_grade,
    is_plain_language,
    syllable_count,
    text_counts,
)


@pytest.mark.parametrize(
    ("word", "syllables"),
    [
        ("you", 1), ("care", 1), ("while", 1), ("names", 1), ("signed", 1), ("stop", 1),
        ("able", 2), ("simple", 2), ("dated", 2), ("uses", 2), ("agree", 2), ("email", 2), ("patient", 2),
        ("services", 3), ("period", 3), ("media", 3), ("actual", 3),
        ("information", 4), ("revocation", 4), ("authorization", 5),
    ],
)
def test_syllable_count_by_rule(word, syllables):
    assert syllable_count(word) == syllables


def test_counts_sentences_at_punctuation_and_line_ends():
    text = "When this ends\nIt ends in two years. You can stop it! Ask us?"

    assert text_counts(text) == (4, 14, 14)


def test_grade_follows_the_flesch_kincaid_formula():
    # 1 sentence, 6 words, 6 syllables: 0.39 * 6 + 11.8 * 1 - 15.59 = -1.45
    assert flesch_kincaid_grade("The cat sat on the mat.") == pytest.approx(-1.4, abs=0.051)
    assert flesch_kincaid_grade("") == 0.0


def test_r_auth_plain_short_everyday_sentences_are_plain_and_legalese_is_not():
    """R-AUTH-PLAIN: the warning is about grade 8."""
    plain = "You can stop this at any time. Use the link in any email, or write to us."
    legalese = (
        "Information disclosed pursuant to this authorization may be subject to redisclosure by the recipient "
        "and may consequently no longer be protected by applicable federal privacy regulations."
    )

    assert PLAIN_LANGUAGE_GRADE_LIMIT == 8
    assert is_plain_language(flesch_kincaid_grade(plain))
    assert flesch_kincaid_grade(legalese) > 15
    assert not is_plain_language(flesch_kincaid_grade(legalese))
