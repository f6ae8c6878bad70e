"""Team and member names: checked (length, no invisible or control characters) and folded into
a key under which names that look alike are equal.

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


def checked_name(name: str, what: str = "team name") -> str:
    """The name without surrounding whitespace, or a RuleError saying what is wrong."""
    stripped = name.strip()
    if not stripped:
        raise RuleError(f"the {what} is empty")
    if len(stripped) > MAX_NAME_CHARS:
        raise RuleError(f"the {what} is {len(stripped)} characters long; at most "
                        f"{MAX_NAME_CHARS} are allowed")
    for k, char in enumerate(stripped):
        if unicodedata.category(char) in FORBIDDEN_CATEGORIES:
            raise RuleError(f"the {what} contains an invisible or control character "
                            f"(U+{ord(char):04X}) at position {k + 1}; use visible "
                            "characters and spaces only")
    return stripped


def folded(name: str) -> str:
    """The name as compared: NFKC, case folded, look-alikes mapped, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", name)
    for _ in range(4):  # a fixed point within a few rounds (prototypes are not sources)
        mapped = unicodedata.normalize("NFKC", _skeleton(text)).casefold()
        if mapped == text:
            break
        text = mapped
    return " ".join(text.split())


def name_key(name: str) -> str:
    """SHA-256 of the folded name: what the store keeps unique (fixed length, whatever the
    folding expands to)."""
    return hashlib.sha256(folded(name).encode()).hexdigest()


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
