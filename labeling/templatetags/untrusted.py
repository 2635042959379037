"""``{{ completion.text|untrusted }}``: model and user text escaped, with direction controls shown, not applied."""
from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from webapp.untrusted_text import bidi_marked

register = template.Library()


@register.filter
def untrusted(value: object) -> SafeString:
    return bidi_marked("" if value is None else str(value))
