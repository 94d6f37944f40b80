"""Workflows: steps in order, each reading earlier steps through path expressions, checkpointed one by one.

``registry`` holds the step types (one class each, with params and outputs schemas), ``paths`` the path
expressions and templates, ``definition`` the checks a definition passes before it is stored or run, and
``engine`` the executor that a Celery task drives, resuming from the last checkpoint after a crash.
"""
