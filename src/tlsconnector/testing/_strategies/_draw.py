"""Small drawing helpers the strategy modules share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from cryptography import x509
from hypothesis import strategies as st

T = TypeVar("T")
EKU = tuple[x509.ObjectIdentifier, ...] | None

_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_BOOLEANS = st.booleans()


def _pick(draw: st.DrawFn, items: Sequence[T]) -> T:
    """One of ``items``; shrinks towards the first."""
    return items[draw(st.integers(0, len(items) - 1))]


def _draw_case(draw: st.DrawFn, text: str) -> str:
    """``text`` with a drawn case for each ASCII letter (never Unicode case mapping);
    shrinks towards ``text`` as given."""
    letters = [i for i, char in enumerate(text) if char.isascii() and char.isalpha()]
    if not letters:
        return text
    mask = draw(st.integers(0, (1 << min(len(letters), 64)) - 1))
    chars = list(text)
    for bit, position in enumerate(letters[:64]):
        if mask >> bit & 1:
            chars[position] = chars[position].swapcase()
    return "".join(chars)
