"""Heavy request work (parsing and writing a big ingest or import) in helper processes, not the web process.

daphne serves every request from one process: a 30 MB trajectory parsed and written there holds the GIL (and
with SQLite the write lock) long enough to stall every other org's calls for seconds. A small pool of spawned
helper processes, each with Django set up and its own database connection, does that work instead; the web
process only hands over the bytes and waits in the request's own thread.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from django.conf import settings

from orgs.api_errors import ApiError

logger = logging.getLogger(__name__)

T = TypeVar("T")

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _set_up() -> None:
    import django

    django.setup()


def _guarded(fn: Callable[..., Any], *args: Any) -> Any:
    """Run in a helper: an ApiError comes back as data (its constructor does not survive pickling)."""
    from django.db import connections

    try:
        return fn(*args)
    except ApiError as exc:
        return _Refused(exc.status, exc.message, exc.code, exc.param, exc.headers)
    finally:
        connections.close_all()


class _Refused:
    def __init__(self, status: int, message: str, code: str | None, param: str | None, headers: dict[str, str]):
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers


def _executor() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(
                settings.JETTY_INGEST_PROCESSES, mp_context=multiprocessing.get_context("spawn"), initializer=_set_up
            )
        return _pool


def _discard(broken: ProcessPoolExecutor) -> None:
    global _pool
    with _pool_lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False, cancel_futures=True)


def call(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a helper process (``fn`` a module-level function, the arguments plain data); an ApiError
    raised there is raised here. A helper that died (killed, out of memory) is replaced for the next call."""
    executor = _executor()
    try:
        outcome = executor.submit(_guarded, fn, *args).result()
    except BrokenProcessPool:
        logger.exception("an ingest helper process died")
        _discard(executor)
        raise
    if isinstance(outcome, _Refused):
        raise ApiError(outcome.status, outcome.message, code=outcome.code, param=outcome.param, headers=outcome.headers)
    return outcome
