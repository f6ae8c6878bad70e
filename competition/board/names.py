"""Team and member names: checked (length, no invisible or control characters) and folded into
a key under which names that look alike are equal.

Invisible characters: besides control and format characters (refused by category), Unicode's
Default_Ignorable_Code_Point set (variation selectors, the combining grapheme joiner, Hangul
fillers, tag characters...: letters and marks by category, drawn as nothing) and the symbols
drawn as a blank (U+2800 BRAILLE PATTERN BLANK, U+1D159 MUSICAL SYMBOL NULL NOTEHEAD). They are
refused in new names, and dropped from the key as well. Refused: such a name is nobody's honest
choice, and wherever names are shown or used exactly (the boards, grades.csv, a team's MLflow
experiment) it is indistinguishable from its visible twin. Dropped: a name stored before this
check ("alpha" + U+3164) still has the key of "alpha", so a new "alpha" is refused as its
look-alike (the stored name itself, refused now like a new one, can no longer be used). One
exception: variation selector 15 or 16 right after a symbol chooses its text or emoji
presentation (phones add U+FE0F after U+2764 HEAVY BLACK HEART), so it is allowed there; the
key drops it all the same.

The key: NFKC (full-width and styled letters become plain ones), case folded, whitespace runs
collapsed, and the look-alike letters of other scripts mapped to one prototype after Unicode
TR39's confusables (Cyrillic "о" and Greek "ο" are Latin "o"; "0" is "o", "1" and "I" are "l",
"m" is "rn"). The confusables table is the `confusable_homoglyphs` package's copy of the
Unicode data; it keeps each pair in both directions, so a character's prototype is recovered
below as the one homoglyph a source character has (prototypes are never sources in TR39).
Folding and mapping are repeated until nothing changes, so the key is a fixed point.

>>> name_key("Owls") == name_key(" ｏｗｌｓ ") == name_key("\u043ewls") == name_key("OWLS")
True
>>> name_key("Owls") == name_key("Owens")
False
"""

from __future__ import annotations

import hashlib
import unicodedata
from functools import lru_cache
from typing import Any

from competition.board.context import RuleError

MAX_NAME_CHARS = 200  # the store's name columns hold 200 characters
# Control characters, format characters (zero-width joiners, bidirectional overrides: they
# change how a name looks without being seen), surrogates and private-use characters.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co"})
# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt of Unicode 15), as (first,
# last) ranges: Python's unicodedata does not expose the property.
DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
MAX_STACKED_MARKS = 4
# Symbols drawn as a blank (not whitespace to Python, so not collapsed with it).
BLANK_SYMBOLS = frozenset({"\u2800", "\U0001D159"})
# Text and emoji presentation selectors: allowed right after a symbol (see the docstring).
PRESENTATION_SELECTORS = frozenset({"\uFE0E", "\uFE0F"})


def is_invisible(char: str) -> bool:
    """Drawn as nothing or as a blank, though not whitespace (see the module docstring)."""
    code = ord(char)
    return char in BLANK_SYMBOLS or any(first <= code <= last
                                        for first, last in DEFAULT_IGNORABLE)


def checked_name(name: str, what: str = "team name") -> str:
    """The name without surrounding whitespace, or a RuleError saying what is wrong."""
    stripped = name.strip()
    if not stripped:
        raise RuleError(f"the {what} is empty")
    if len(stripped) > MAX_NAME_CHARS:
        raise RuleError(f"the {what} is {len(stripped)} characters long; at most "
                        f"{MAX_NAME_CHARS} are allowed")
    _check_stacked_marks(stripped, what)
    for k, char in enumerate(stripped):
        presentation = char in PRESENTATION_SELECTORS and k > 0 and \
            unicodedata.category(stripped[k - 1]) == "So"
        if unicodedata.category(char) in FORBIDDEN_CATEGORIES or \
                (is_invisible(char) and not presentation):
            raise RuleError(f"the {what} contains an invisible or control character "
                            f"(U+{ord(char):04X}) at position {k + 1}; use visible "
                            "characters and spaces only")
    return stripped


def _check_stacked_marks(name: str, what: str) -> None:
    """At most MAX_STACKED_MARKS combining marks on one character (decomposed, so that
    precomposed letters count their marks too): more are drawn over the neighbouring rows of
    a board, not as a name (Vietnamese needs two; "Zalgo" text piles up dozens)."""
    run = 0
    for char in unicodedata.normalize("NFD", name):
        run = run + 1 if unicodedata.category(char) in ("Mn", "Me") else 0
        if run > MAX_STACKED_MARKS:
            raise RuleError(f"the {what} stacks more than {MAX_STACKED_MARKS} combining marks "
                            "on one character")


def folded(name: str) -> str:
    """The name as compared: NFKC, case folded, look-alikes mapped, invisible characters
    dropped, whitespace collapsed."""
    text = _visible(unicodedata.normalize("NFKC", name))
    for _ in range(4):  # a fixed point within a few rounds (prototypes are not sources)
        mapped = _visible(unicodedata.normalize("NFKC", _skeleton(text)).casefold())
        if mapped == text:
            break
        text = mapped
    return " ".join(text.split())


def name_key(name: str) -> str:
    """SHA-256 of the folded name: what the store keeps unique (fixed length, whatever the
    folding expands to)."""
    return hashlib.sha256(folded(name).encode()).hexdigest()


def _visible(text: str) -> str:
    return "".join(c for c in text if not is_invisible(c))


def _skeleton(text: str) -> str:
    """TR39's skeleton: NFD, each character replaced by its prototype, NFD again."""
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", "".join(_prototype(c) for c in decomposed))


@lru_cache(maxsize=1)
def _confusables() -> dict[str, Any]:
    """Unicode's confusables, as the package keeps them (loaded on first use: 30 ms)."""
    from confusable_homoglyphs.confusables import confusables_data

    table: dict[str, Any] = confusables_data
    return table


@lru_cache(maxsize=4096)
def _prototype(char: str) -> str:
    confusables_data = _confusables()
    entries = confusables_data.get(char)
    if not entries:
        return char
    if len(entries) > 1:  # only a prototype has several homoglyphs: its sources
        return char
    other = entries[0]["c"]
    if len(other) > 1 or len(confusables_data.get(other, ())) > 1:
        return str(other)  # a source and its prototype
    # A pair alone (a prototype with one source): which is which is lost in the table; either
    # serves as the pair's key, so take the smaller.
    return min(char, str(other))
