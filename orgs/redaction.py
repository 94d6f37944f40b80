"""Jetty's own credentials, recognised by their shape wherever text is stored: org API tokens (``jty_``) and
sandbox run tokens (``jrt_``), each a prefix and 43 URL-safe characters.

An agent that prints its environment, or writes its run token to a file the workspace watcher diffs, would
otherwise put a live credential into its trajectory; every event and run error is stored through ``storable``.
"""

from __future__ import annotations

import re
from typing import Any

CREDENTIAL = re.compile(r"\b(jty|jrt)_[A-Za-z0-9_-]{40,}")
LABELS = {"jty": "[secret:api-token]", "jrt": "[secret:run-token]"}


def redact_text(text: str) -> str:
    if "_" not in text or not ("jty_" in text or "jrt_" in text):
        return text  # the common case, without a regex pass
    return CREDENTIAL.sub(lambda m: LABELS[m.group(1)], text)


def _encodable(text: str) -> str:
    """The text with lone surrogates (a name or a line that was not UTF-8, or a JSON ``\\udcff`` escape) replaced by
    U+FFFD: no database driver can encode them, and one stored would break every later read of its row."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def storable(value: Any) -> Any:
    """The value as it may be stored: credentials redacted, and NUL characters (which PostgreSQL's text and jsonb
    cannot hold) replaced with U+FFFD, in keys and strings however deep in lists and dicts."""
    if isinstance(value, str):
        return redact_text(_encodable(value.replace("\x00", "\ufffd") if "\x00" in value else value))
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    return value
