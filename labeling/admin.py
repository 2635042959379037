"""Django admin for labeling. Prompt and completion text is shown isolated, its direction controls visible."""
from __future__ import annotations

import unicodedata
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import smart_split, unescape_string_literal

from labeling.models import (
    ApiToken,
    Completion,
    PairTask,
    PairVote,
    Project,
    Prompt,
    RateTask,
    Rating,
    TaskLease,
    TaskSkip,
)
from webapp.untrusted_text import isolated


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "mode", "overlap", "guideline_version", "created_at")
    filter_horizontal = ("members",)
    search_fields = ("name",)


def _message_contents(messages: Any) -> str:
    """The contents of a prompt's chat messages, one per line: what a search looks in (roles and keys are not)."""
    if not isinstance(messages, list):
        return ""
    return "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))


def _search_words(search_term: str) -> list[str]:
    """The words of an admin search, quoted phrases kept whole, as the admin's own search splits them."""
    words = []
    for bit in smart_split(search_term):
        if bit.startswith(('"', "'")) and bit[0] == bit[-1]:
            bit = unescape_string_literal(bit)
        if bit:
            words.append(unicodedata.normalize("NFC", bit))
    return words


def _longest_plain_run(word: str) -> str:
    """The longest piece of ``word`` that is stored verbatim in the JSON text of the messages, whatever the
    database: ASCII without quotes, backslashes and control characters (JSON escapes those, and SQLite keeps
    every other character as a \\uXXXX escape)."""
    runs, current = [], []
    for char in word:
        if " " <= char <= "~" and char not in '"\\':
            current.append(char)
        else:
            runs.append("".join(current))
            current = []
    runs.append("".join(current))
    return max(runs, key=len)


def _prompts_containing(queryset: QuerySet[Prompt], words: list[str]) -> list[int]:
    """Ids of the prompts in ``queryset`` whose message contents contain every word, ignoring case.

    Prompt.messages is JSON, so a plain icontains on it would match keys ("role", "content") and miss any word
    that JSON escapes (accents, on SQLite). The database narrows the candidates on the part of each word it
    stores verbatim; the contents themselves are then matched in Python, where ignoring case works in every
    script. A word with no such part (all Greek, say) is matched in Python alone.
    """
    candidates = queryset.annotate(messages_json=Cast("messages", output_field=TextField()))
    for word in words:
        if plain := _longest_plain_run(word):
            candidates = candidates.filter(messages_json__icontains=plain)
    needles = [word.lower() for word in words]
    return [
        pk
        for pk, messages in candidates.values_list("pk", "messages").iterator(chunk_size=2000)
        if all(needle in unicodedata.normalize("NFC", _message_contents(messages)).lower() for needle in needles)
    ]


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "external_id", "split", "contents", "created_at")
    list_filter = ("project", "split")
    search_fields = ("external_id",)
    search_help_text = "Words in the messages (every word must appear), or the external id."
    readonly_fields = ("messages_shown",)

    @admin.display(description="Prompt (last user message)")
    def contents(self, prompt: Prompt) -> SafeString:
        return isolated(prompt.text, limit=120)

    @admin.display(description="Messages, as shown to annotators")
    def messages_shown(self, prompt: Prompt) -> SafeString:
        messages = [m for m in prompt.messages if isinstance(m, dict)] if isinstance(prompt.messages, list) else []
        return format_html_join(
            "", "<p><b>{}</b>: {}</p>", ((isolated(str(m.get("role", ""))), isolated(str(m.get("content", "")))) for m in messages)
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Prompt], search_term: str
    ) -> tuple[QuerySet[Prompt], bool]:
        by_id, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        words = _search_words(search_term)
        if not words:
            return by_id, may_have_duplicates
        return by_id | queryset.filter(pk__in=_prompts_containing(queryset, words)), may_have_duplicates


@admin.register(Completion)
class CompletionAdmin(admin.ModelAdmin):
    list_display = ("id", "prompt_text", "text_start", "source", "model_name", "model_version")
    list_filter = ("source",)
    list_select_related = ("prompt", "model_version")
    raw_id_fields = ("prompt",)
    search_fields = ("text",)
    readonly_fields = ("text_shown",)

    @admin.display(description="Prompt")
    def prompt_text(self, completion: Completion) -> SafeString:
        return isolated(completion.prompt.text, limit=60)

    @admin.display(description="Text")
    def text_start(self, completion: Completion) -> SafeString:
        return isolated(completion.text, limit=120)

    @admin.display(description="Text, as shown to annotators")
    def text_shown(self, completion: Completion) -> SafeString:
        return isolated(completion.text)


@admin.register(PairTask)
class PairTaskAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "purpose", "status", "vote_count", "overlap", "adjudicated_choice")
    list_filter = ("project", "purpose", "status")
    raw_id_fields = ("prompt", "completion_a", "completion_b")


@admin.register(RateTask)
class RateTaskAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "status", "vote_count", "overlap")
    list_filter = ("project", "status")
    raw_id_fields = ("completion",)


@admin.register(PairVote)
class PairVoteAdmin(admin.ModelAdmin):
    list_display = ("id", "pair", "annotator", "choice", "a_side", "strength", "time_spent_ms", "created_at")
    list_filter = ("choice", "a_side")
    list_select_related = ("task__prompt", "annotator")
    raw_id_fields = ("task",)

    @admin.display(description="Task")
    def pair(self, vote: PairVote) -> SafeString:
        return format_html("Pair {} ({})", vote.task_id, isolated(vote.task.prompt.text, limit=40))


@admin.register(Rating)
class RatingAdmin(admin.ModelAdmin):
    list_display = ("id", "completion_text", "annotator", "value", "created_at")
    list_filter = ("value",)
    list_select_related = ("completion", "annotator")
    raw_id_fields = ("task", "completion")

    @admin.display(description="Completion")
    def completion_text(self, rating: Rating) -> SafeString:
        return isolated(rating.completion.text, limit=60)


@admin.register(TaskLease)
class TaskLeaseAdmin(admin.ModelAdmin):
    list_display = ("kind", "task_id", "annotator", "leased_at", "expires_at")


@admin.register(TaskSkip)
class TaskSkipAdmin(admin.ModelAdmin):
    list_display = ("kind", "task_id", "annotator", "created_at")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("user", "name", "created_at", "last_used_at")
    readonly_fields = ("digest",)
