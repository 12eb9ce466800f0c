"""The readability behind the plain-language warning (R-AUTH-PLAIN): Flesch-Kincaid for English, INFLESZ for Spanish."""
import pytest

from consent.readability import (
    PLAIN_LANGUAGE_GRADE_LIMIT,
    SPANISH_PLAIN_LANGUAGE_LIMIT,
    flesch_kincaid_grade,
    inflesz_score,
    is_plain_language,
    readability_of,
    spanish_syllable_count,
    spanish_text_counts,
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


# --- Spanish: Szigriszt-Pazos on the INFLESZ scale (issue 17, item 6) -----------------------------------------


@pytest.mark.parametrize(
    ("word", "syllables"),
    [
        ("información", 4), ("autorización", 5), ("paciente", 3), ("día", 2), ("país", 2), ("reúne", 3),
        ("que", 1), ("guerra", 2), ("guiso", 2), ("pingüino", 3), ("leer", 2), ("poeta", 3), ("aire", 2),
        ("ciudad", 2), ("cuidado", 3), ("muy", 1), ("hoy", 1), ("buey", 1), ("y", 1), ("usted", 2),
        ("electrónico", 5), ("mensajes", 3), ("firma", 2), ("2027", 1),
    ],
)
def test_spanish_syllables_by_the_rules_of_spanish_spelling(word, syllables):
    """Diphthongs are one syllable, hiatus two, an accented í or ú breaks a diphthong, the u of que/gui is silent."""
    assert spanish_syllable_count(word) == syllables


def test_inflesz_of_a_known_short_text():
    """El niño come pan: 1 sentence, 4 words, 6 syllables: 206.835 - 62.3 * 6/4 - 4/1 = 109.385."""
    assert spanish_text_counts("El niño come pan.") == (1, 4, 6)
    assert inflesz_score("El niño come pan.") == 109.4


def test_inflesz_of_a_known_two_sentence_text():
    """"Usted puede cancelar esta autorización. Su atención médica no cambia.": 2 sentences, 10 words,
    us-ted pue-de can-ce-lar es-ta au-to-ri-za-ción (2+2+3+2+5 = 14) su a-ten-ción mé-di-ca no cam-bia
    (1+3+3+1+2 = 10): 24 syllables. 206.835 - 62.3 * 24/10 - 10/2 = 52.315."""
    text = "Usted puede cancelar esta autorización. Su atención médica no cambia."
    assert spanish_text_counts(text) == (2, 10, 24)
    assert inflesz_score(text) == 52.3


def test_r_auth_plain_spanish_threshold_is_inflesz_55_and_legal_prose_is_flagged():
    """R-AUTH-PLAIN: below 55 ("somewhat hard" on the INFLESZ scale) a Spanish text is flagged; plain text is not."""
    plain = "Puede decir que no. Su atención no cambia. Puede parar estos mensajes cuando quiera."
    legal = (
        "La presente autorización faculta a la entidad cubierta para utilizar y divulgar información sanitaria "
        "identificable con finalidades comerciales, de conformidad con la normativa federal aplicable en materia "
        "de privacidad, hasta la fecha de vencimiento establecida."
    )
    assert SPANISH_PLAIN_LANGUAGE_LIMIT == 55
    easy, hard = readability_of(plain, language="es"), readability_of(legal, language="es")
    assert easy.score >= 55 and not easy.too_hard
    assert hard.score < 40 and hard.too_hard
    assert hard.formula == "INFLESZ (Szigriszt-Pazos)" and hard.higher_is_easier
    assert readability_of(plain, language="en").formula == "Flesch-Kincaid"
