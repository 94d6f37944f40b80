"""The built-in step types. Importing this package registers them all."""

from . import agents, control, data, files, llm, text, web  # noqa: F401
