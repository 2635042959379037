"""``{{ model.path|path_breaks }}``: a file path that wraps between folders, not in the middle of a name."""
from __future__ import annotations

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


@register.filter
def path_breaks(value: object) -> SafeString:
    """The path escaped, with a line-break opportunity after each slash. The CSS's `overflow-wrap: anywhere`
    stays the fallback for a single name longer than its box."""
    parts = ("" if value is None else str(value)).split("/")
    return mark_safe("/<wbr>".join(str(conditional_escape(part)) for part in parts))  # noqa: S308 - each part escaped
