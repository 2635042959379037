"""Model and user text, in the Django admin and on the app's screens: escaped, isolated, and with the direction
controls that reorder it made visible.

A prompt or completion may carry Unicode bidirectional controls (U+202E RIGHT-TO-LEFT OVERRIDE and friends). Left
as they are, they reverse the text that follows them, so an admin reads something other than what is stored.
"""
from __future__ import annotations

from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString, mark_safe

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


# The controls that reorder a run of text (embeddings, overrides, isolates). The marks (LRM, RLM, ALM) are left as
# they are: real right-to-left text uses them, and alone they cannot reverse a run ("gpj.exe" shown as "exe.jpg").
REORDERING_CONTROLS = {char: name for char, name in BIDI_CONTROLS.items() if name not in ("LRM", "RLM", "ALM")}


def bidi_marked(text: str) -> SafeString:
    """HTML for untrusted ``text`` on a screen: escaped, with each control that would reorder it replaced by a
    visible mark saying what was there, so a reader sees the text as stored and knows it tried to reorder itself."""
    parts: list[str] = []
    start = 0
    for index, char in enumerate(text):
        name = REORDERING_CONTROLS.get(char)
        if name is None:
            continue
        parts.append(conditional_escape(text[start:index]))
        parts.append(format_html(
            '<span class="bidi-mark" data-testid="bidi-mark" title="A Unicode direction control (U+{} {}) was '
            'here: shown, not applied, so the text reads as stored.">⇄{}</span>',
            f"{ord(char):04X}", name, name,
        ))
        start = index + 1
    if not parts:
        return conditional_escape(text)
    parts.append(conditional_escape(text[start:]))
    return mark_safe("".join(parts))  # noqa: S308 - every part above is escaped or built by format_html
