"""How hard a form's text is to read (R-AUTH-PLAIN): the Flesch-Kincaid grade level for English, the
Szigriszt-Pazos perspicuity on the INFLESZ scale for Spanish.

Written here rather than taken from a package: the well-known one (textstat 0.7.13) downloads a pronouncing
dictionary from the network the first time it runs, which a production web process must not do. The grade
is a warning for the author, never a gate, so a syllable count by rule (vowel groups, with the common
English exceptions) is precise enough; it agrees with dictionary counts on the short words plain language
uses, which is what the warning is about.

    grade = 0.39 * (words / sentences) + 11.8 * (syllables / words) - 15.59
"""
import re
from dataclasses import dataclass

# Policy (R-AUTH-PLAIN): above this grade the editor, the preview and the publish audit event say so.
PLAIN_LANGUAGE_GRADE_LIMIT = 8

_WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*|\d+(?:[.,]\d+)*")
# A sentence ends at . ! ? (followed by space or the end) or at the end of a line: headings and list items
# are short units of their own, not part of the next sentence.
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)|\n+")
_VOWEL_GROUP = re.compile(r"[aeiouy]+")


def syllable_count(word: str) -> int:
    """Syllables of one English word, by rule. Numbers count as one word of one syllable per digit group."""
    word = word.lower().replace("’", "'")
    if not word.isalpha() and "'" not in word:
        return 1
    word = word.split("'")[0] or word  # "you're" -> "you", "patient's" -> "patient"
    if len(word) <= 3:
        return 1
    count = len(_VOWEL_GROUP.findall(word))
    vowels = "aeiouy"
    # A final silent e ("care", "while"), but not "-le" after a consonant ("able", "simple") nor "-ee".
    if word.endswith("e") and count > 1 and not word.endswith("ee"):
        if not (word.endswith("le") and word[-3] not in vowels):
            count -= 1
    # "-ed" adds a syllable only after t or d ("dated", not "signed"); "-es" only after a hissing sound
    # ("uses", "services", not "names").
    elif word.endswith("ed") and count > 1 and word[-3] not in vowels + "td":
        count -= 1
    elif word.endswith("es") and count > 1 and word[-3] not in vowels + "scxzgh":
        count -= 1
    # Two vowels that are two syllables: "media", "period", "actual"; but one in "-tion", "-cial", "-sion".
    count += len(re.findall(r"[^aeiou]i[ao]|[^aeiougq]ua", word)) - len(re.findall(r"[cst]i[aou][nlus]", word))
    return max(count, 1)


def text_counts(text: str) -> tuple[int, int, int]:
    """(sentences, words, syllables) of a text."""
    sentences = [part for part in _SENTENCE_END.split(text) if _WORD.search(part)]
    words = _WORD.findall(text)
    return len(sentences), len(words), sum(syllable_count(word) for word in words)


def flesch_kincaid_grade(text: str) -> float:
    """The Flesch-Kincaid grade level of a text, to one decimal; 0.0 for a text without words."""
    sentences, words, syllables = text_counts(text)
    if not words:
        return 0.0
    grade = 0.39 * (words / max(sentences, 1)) + 11.8 * (syllables / words) - 15.59
    return round(grade, 1)


def is_plain_language(grade: float) -> bool:
    return grade <= PLAIN_LANGUAGE_GRADE_LIMIT


# --- Spanish --------------------------------------------------------------------------------------------------
#
# English grade formulas mean nothing for Spanish text: Spanish words have more syllables for the same difficulty.
# Szigriszt-Pazos's perspicuity (1993), a Spanish recalibration of Flesch's reading ease, scored on the INFLESZ scale
# that Barrio-Cantalejo et al. validated on Spanish health texts for patients (Anales del Sistema Sanitario de
# Navarra 31(2), 2008):
#
#     INFLESZ = 206.835 - 62.3 * (syllables / words) - (words / sentences)
#
#     below 40 very hard · 40-55 somewhat hard · 55-65 normal · 65-80 fairly easy · 80 and above very easy
#
# Higher is easier (unlike a grade). Policy (R-AUTH-PLAIN): a Spanish form scoring below 55, "somewhat hard" or
# worse, gets the same warning as an English one above grade 8; the authors of INFLESZ name 55 the least a text for
# patients should reach.
SPANISH_PLAIN_LANGUAGE_LIMIT = 55

_SPANISH_WORD = re.compile(r"[^\W\d_]+|\d+(?:[.,]\d+)*")
_STRONG = set("aeoáéó") | {"í", "ú"}  # an accented i or u is a syllable of its own, like a strong vowel
_WEAK = set("iuüy")


def spanish_syllable_count(word: str) -> int:
    """Syllables of one Spanish word, by the rules of Spanish spelling: each vowel nucleus is a syllable; two weak
    vowels, or a weak and a strong one, make one (a diphthong), two strong vowels two (a hiatus), and an accented í or
    ú breaks a diphthong ("día", "país"). The u of que, qui, gue and gui is silent; a final y after a vowel is a
    vowel ("hoy", "muy"); the word "y" is one syllable. Numbers count as one."""
    word = word.lower()
    if not word.isalpha():
        return 1
    if word == "y":
        return 1
    nuclei = 0
    previous = ""  # the previous letter if it was part of a vowel nucleus, else ""
    for index, letter in enumerate(word):
        following = word[index + 1] if index + 1 < len(word) else ""
        silent_u = letter == "u" and index > 0 and word[index - 1] in "qg" and following in "eiéí"
        vowel = letter in _STRONG or letter in "iuü" or (letter == "y" and previous and not following)
        if silent_u or not vowel:
            previous = ""
            continue
        if not previous:
            nuclei += 1
        elif (previous in _STRONG and letter in _STRONG) or letter in "íú" or previous in "íú":
            nuclei += 1  # a hiatus: a new syllable
        previous = letter
    return max(nuclei, 1)


def spanish_text_counts(text: str) -> tuple[int, int, int]:
    """(sentences, words, syllables) of a Spanish text. ¿ and ¡ open a sentence; . ! ? and line ends close one."""
    sentences = [part for part in _SENTENCE_END.split(text) if _SPANISH_WORD.search(part)]
    words = _SPANISH_WORD.findall(text)
    return len(sentences), len(words), sum(spanish_syllable_count(word) for word in words)


def inflesz_score(text: str) -> float:
    """Szigriszt-Pazos perspicuity of a Spanish text, on the INFLESZ scale, to one decimal; 0.0 without words."""
    sentences, words, syllables = spanish_text_counts(text)
    if not words:
        return 0.0
    return round(206.835 - 62.3 * (syllables / words) - words / max(sentences, 1), 1)


@dataclass(frozen=True)
class Readability:
    """A text's score in its language's formula, and whether it is above the plain-language policy's limit."""

    language: str
    score: float
    formula: str  # how the page names the formula
    limit: float
    too_hard: bool

    @property
    def higher_is_easier(self) -> bool:
        return self.language == "es"


def readability_of(text: str, *, language: str = "en") -> Readability:
    """The readability of a text in the formula of its language (R-AUTH-PLAIN)."""
    if language == "es":
        score = inflesz_score(text)
        return Readability(
            language="es", score=score, formula="INFLESZ (Szigriszt-Pazos)",
            limit=SPANISH_PLAIN_LANGUAGE_LIMIT, too_hard=score < SPANISH_PLAIN_LANGUAGE_LIMIT,
        )
    grade = flesch_kincaid_grade(text)
    return Readability(
        language="en", score=grade, formula="Flesch-Kincaid", limit=PLAIN_LANGUAGE_GRADE_LIMIT,
        too_hard=not is_plain_language(grade),
    )
