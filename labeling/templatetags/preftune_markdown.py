"""Render admin-written markdown (guidelines) as sanitised HTML: tags and attributes outside a safe list are dropped."""
from __future__ import annotations

import markdown as markdown_lib
import nh3
from django import template
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

_ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "b", "i", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td",
}


@register.filter(name="markdown")
def render_markdown(text: str) -> SafeString:
    html = markdown_lib.markdown(text or "", extensions=["tables", "fenced_code"], output_format="html")
    # nh3 removes scripts, event handlers and javascript: URLs; what is left is safe to mark as such.
    return mark_safe(nh3.clean(html, tags=_ALLOWED_TAGS, attributes={"a": {"href", "title"}}, link_rel="noopener noreferrer"))  # noqa: S308
