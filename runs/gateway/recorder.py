"""Durable, off-the-critical-path recording of gateway calls.

A call's record is appended to a local spool segment (one ``write`` to the page cache, so a killed process loses
nothing) and queued in memory; a background thread writes queued records to the database in batches and then
deletes the segment that held them. A segment whose owner died (its ``flock`` is free) is replayed by
``recover_spool``, run by Celery beat; replay is idempotent on the run's public id.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections

from trajectories.actions import RunRecord, record_finished_runs

logger = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".jsonl"


def _fill_costs(records: list[dict[str, Any]]) -> None:
    """Price model calls whose cost the provider did not report (done here, off the request path)."""
    from .pricing import cost_of

    for record in records:
        if record.get("cost_usd") is not None:
            continue
        total = 0.0
        for event in record["events"]:
            if event.get("kind") == "model.call" and event.get("cost_usd") is None:
                event["cost_usd"] = cost_of(
                    event.get("model") or record["model"],
                    event.get("provider") or "",
                    event.get("prompt_tokens") or 0,
                    event.get("completion_tokens") or 0,
                )
            total += event.get("cost_usd") or 0.0
        record["cost_usd"] = total


def write_records(records: list[dict[str, Any]]) -> int:
    _fill_costs(records)
    return record_finished_runs([RunRecord.from_dict(r) for r in records])


class Recorder:
    def __init__(self, spool_dir: Path, flush_s: float, batch: int = 500):
        self.spool_dir = spool_dir
        self.flush_s = flush_s
        self.batch = batch
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: list[dict[str, Any]] = []
        self._fd: int | None = None
        self._path: Path | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def submit(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:
            if self._fd is None:
                self._open_segment()
            assert self._fd is not None
            os.write(self._fd, line)
            self._pending.append(record)
            count = len(self._pending)
        if self._thread is None or os.getpid() != self._pid:
            self._start()
        if count >= self.batch:
            self._wake.set()

    def _open_segment(self) -> None:
        # Locked before it gets its final name, so recovery never mistakes a new segment for an orphan.
        name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        tmp = self.spool_dir / f"{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = self.spool_dir / f"{name}{SEGMENT_SUFFIX}"
        os.rename(tmp, path)
        self._fd, self._path = fd, path

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._loop, name="jetty-recorder", daemon=True)
            self._thread.start()
            atexit.register(self.flush)

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.flush_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the records stay in their spool segment and recovery retries them
                logger.exception("recorder flush failed; spool segment left for recovery")

    def flush(self) -> int:
        with self._lock:
            batch, self._pending = self._pending, []
            fd, path = self._fd, self._path
            self._fd = self._path = None
        if fd is None:
            return 0
        try:
            written = write_records(batch) if batch else 0
        except Exception:
            os.close(fd)  # releases the lock: the segment is now an orphan for recover_spool
            close_old_connections()
            raise
        assert path is not None
        path.unlink(missing_ok=True)
        os.close(fd)
        return written


_recorder: Recorder | None = None


def recorder() -> Recorder:
    global _recorder
    if _recorder is None:
        _recorder = Recorder(Path(settings.JETTY_SPOOL_DIR), settings.JETTY_RECORD_FLUSH_S)
    return _recorder


def recover_spool(spool_dir: Path | None = None) -> int:
    """Replay spool segments left by dead processes. Returns how many runs were newly stored."""
    spool_dir = spool_dir or Path(settings.JETTY_SPOOL_DIR)
    stored = 0
    for path in sorted(spool_dir.glob(f"*{SEGMENT_SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its owner is alive and will flush it
            with os.fdopen(os.dup(fd), "rb") as handle:
                lines = handle.read().splitlines()
            records = []
            for line in lines:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    logger.warning("skipping a torn line in %s", path.name)
            stored += write_records(records)
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return stored


def hold_run_model_call(run_id: int, event: dict[str, Any]) -> None:
    """Store a sandbox's model call for its run's worker, which places it in the trajectory among the agent's own
    output (``runs.timeline``). Called before the agent has the whole answer, so nothing it does because of the
    answer can be placed before the call."""
    from ..models import Job, PendingModelCall
    from ..secrets import Masker

    sealed = Job.objects.filter(run_id=run_id).values_list("secrets_encrypted", flat=True).first()
    if sealed:  # what the agent sends the model may quote a secret it was given (a command's output, say)
        event = Masker(Job(secrets_encrypted=sealed).secrets)(event)
    PendingModelCall.objects.create(run_id=run_id, ended=time.time(), event=event)
