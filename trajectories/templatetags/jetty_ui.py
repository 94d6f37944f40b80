"""Template filters the UI's pages share (a builtin: no ``{% load %}`` needed)."""

from __future__ import annotations

import json
from typing import Any

from django import template
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

from trajectories import present
from trajectories.models import Event

register = template.Library()

# CommonMark without raw HTML: a runbook or summary.md can format text but cannot inject markup or script.
_markdown = MarkdownIt("js-default", {"linkify": False}).enable("table")


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    try:
        return mapping[key]
    except (KeyError, IndexError, TypeError):
        return None


@register.filter
def markdown(text: str) -> SafeString:
    return mark_safe(_markdown.render(text or ""))


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


@register.filter
def make_list_words(text: str) -> list[str]:
    return text.split()


@register.filter
def event_title(event: Event) -> str:
    return present.title(event)


@register.filter
def event_preview(event: Event) -> str:
    return present.preview(event)
