"""Model and user text in the Django admin: escaped, isolated, and with its direction controls made visible.

A prompt or completion may carry Unicode bidirectional controls (U+202E RIGHT-TO-LEFT OVERRIDE and friends). Left
as they are, they reverse the text that follows them, so an admin reads something other than what is stored.
"""
from __future__ import annotations

from django.utils.html import format_html
from django.utils.safestring import SafeString

# Every character that changes the direction of the text after it (embeddings, overrides, isolates and marks).
BIDI_CONTROLS = {
    "\u061c": "ALM",
    "\u200e": "LRM",
    "\u200f": "RLM",
    "\u202a": "LRE",
    "\u202b": "RLE",
    "\u202c": "PDF",
    "\u202d": "LRO",
    "\u202e": "RLO",
    "\u2066": "LRI",
    "\u2067": "RLI",
    "\u2068": "FSI",
    "\u2069": "PDI",
}
_VISIBLE = str.maketrans({char: f"[U+{ord(char):04X} {name}]" for char, name in BIDI_CONTROLS.items()})


def bidi_visible(text: str) -> str:
    """``text`` with each direction control replaced by a visible marker such as "[U+202E RLO]"."""
    return text.translate(_VISIBLE)


def isolated(text: str, *, limit: int | None = None) -> SafeString:
    """HTML for ``text`` in the admin: escaped, controls made visible, inside an isolating element; cut at
    ``limit`` characters (before the markers are added) when given."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + "…"
    return format_html('<bdi dir="auto" style="unicode-bidi: isolate">{}</bdi>', bidi_visible(text))
