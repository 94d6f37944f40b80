"""Keeping secrets out of what is stored: every value a run was given as a secret is masked wherever it shows."""

from __future__ import annotations

from typing import Any

MIN_MASKED_CHARS = 4  # shorter values would mask ordinary words


class Masker:
    """Replaces each secret value with ``[secret:NAME]`` in strings, however deep in lists and dicts."""

    def __init__(self, secrets: dict[str, str] | None = None):
        pairs = [(v, f"[secret:{k}]") for k, v in (secrets or {}).items() if isinstance(v, str)]
        # A value stored with a trailing newline or space shows without it once printed, split into lines or stripped.
        pairs += [(v.strip(), label) for v, label in pairs if v.strip() != v]
        # Longer values first, so a secret containing another is masked whole.
        self.pairs = sorted((p for p in pairs if len(p[0]) >= MIN_MASKED_CHARS), key=lambda p: -len(p[0]))

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def __call__(self, value: Any) -> Any:
        if not self.pairs:
            return value
        if isinstance(value, str):
            for secret, label in self.pairs:
                if secret in value:
                    value = value.replace(secret, label)
            return value
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        return value
