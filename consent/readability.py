"""How hard a form's text is to read: the Flesch-Kincaid grade level (R-AUTH-PLAIN).

Written here rather than taken from a package: the well-known one (textstat 0.7.13) downloads a pronouncing
dictionary from the network the first time it runs, which a production web process must not do. The grade
is a warning for the author, never a gate, so a syllable count by rule (vowel groups, with the common
English exceptions) is precise enough; it agrees with dictionary counts on the short words plain language
uses, which is what the warning is about.

    grade = 0.39 * (words / sentences) + 11.8 * (syllables / words) - 15.59
"""
import re

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
