"""Jetty's own credentials, recognised by their shape wherever text is stored: org API tokens (``jty_``) and
sandbox run tokens (``jrt_``), each a prefix and 43 URL-safe characters.

An agent that prints its environment, or writes its run token to a file the workspace watcher diffs, would
otherwise put a live credential into its trajectory; every event is stored through ``redact_credentials``.
"""

from __future__ import annotations

import re
from typing import Any

CREDENTIAL = re.compile(r"\b(jty|jrt)_[A-Za-z0-9_-]{40,}")
LABELS = {"jty": "[secret:api-token]", "jrt": "[secret:run-token]"}


def redact_credentials(value: Any) -> Any:
    """The value with every credential-shaped string replaced, however deep in lists and dicts."""
    if isinstance(value, str):
        if "_" not in value or not ("jty_" in value or "jrt_" in value):
            return value  # the common case, without a regex pass
        return CREDENTIAL.sub(lambda m: LABELS[m.group(1)], value)
    if isinstance(value, list):
        return [redact_credentials(v) for v in value]
    if isinstance(value, dict):
        return {k: redact_credentials(v) for k, v in value.items()}
    return value
