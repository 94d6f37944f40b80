"""Celery tasks of the runs app. Tasks take ids, are idempotent and safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task

from .gateway.recorder import recover_spool

logger = logging.getLogger(__name__)


@shared_task
def recover_gateway_spool() -> int:
    """Store gateway calls left in spool segments by processes that died before flushing them."""
    stored = recover_spool()
    if stored:
        logger.warning("recovered %d gateway call(s) from orphaned spool segments", stored)
    return stored
