"""Executing one agent run: claim it, provision a sandbox, run the agent, record, collect, clean up.

Called by the ``execute_run`` Celery task with a run id. Safe to run twice or after a crash: the claim refuses a
run that is final or held by a live worker, a stalled run is taken over as a new attempt, and leftovers of earlier
attempts are destroyed first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import mimetypes
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import close_old_connections, transaction
from django.utils import timezone

from orgs.quotas import storage_room
from orgs.redaction import storable
from trajectories.actions import EventRecord, append_events, move_run, record_label, stored_file_name
from trajectories.models import FINAL_STATUSES, Artifact, ErrorKind, LabelSource, Run, RunKind, RunStatus

from .actions import end_run
from .agents import Agent, Mission, agent_for, sanitise
from .contract import ENFORCE, check_contract, failure_message, record_contract, terms_of
from .contract import FAILED_CODE as CONTRACT_FAILED
from .limits import limit_error, sandbox_limits
from .models import Job, RunToken, Upload
from .sandboxes import Outcome, Sandbox, SandboxSpec, SandboxUnavailable, create_sandbox, destroy_leftovers, hostile
from .sandboxes.base import GATEWAY_SOCKET
from .sandboxes.door import gateway_door
from .secrets import Masker
from .timeline import Timeline, flush_pending_calls

logger = logging.getLogger(__name__)

MAX_ARTIFACT_BYTES = 512 * 1024 * 1024
MAX_ARTIFACTS = 10_000  # a run's result files kept at most
MAX_ARTIFACT_PATH = 500  # Artifact.path's length
MAX_REPORT_NESTING = 64  # a validation report's levels of objects and arrays, at most
MAX_RESULT_FILE_BYTES = 16 * 1024 * 1024  # summary.md and validation_report.json, read into the database


class PlatformError(Exception):
    """A fault of ours (sandbox could not start, storage failed): the run is retried."""


RELAY_PORT = 8765


def with_gateway_relay(argv: list[str]) -> list[str]:
    """A relay inside the sandbox carries its loopback TCP to the gateway's unix socket."""
    relay = (
        f"socat TCP-LISTEN:{RELAY_PORT},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:{GATEWAY_SOCKET} & "
        f"for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/{RELAY_PORT}) 2>/dev/null && break; sleep 0.02; "
        'done; exec "$@"'
    )
    return ["/bin/bash", "-c", relay, "jetty-relay", *argv]


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(run_id: int) -> tuple[Job, int] | None:
    """Take the run for this worker, or None if it is final or a live worker holds it."""
    with transaction.atomic():
        job = Job.objects.select_for_update().select_related("run").get(run_id=run_id)
        run = job.run
        if run.status in FINAL_STATUSES:
            return None
        now = timezone.now()
        if run.status == RunStatus.RUNNING and not job.worker:
            # A workflow that let its worker go while it waits for child runs: taken back, not a new attempt.
            job.heartbeat_at, job.worker = now, worker_id()
            job.save(update_fields=["heartbeat_at", "worker"])
            return job, job.attempts
        if run.status == RunStatus.RUNNING and job.heartbeat_at and now - job.heartbeat_at < Job.stalled_after():
            return None
        job.attempts += 1
        job.heartbeat_at, job.worker = now, worker_id()
        job.dispatched_at = job.dispatched_at or now  # a message sent before runs were held counts as sent
        job.save(update_fields=["attempts", "heartbeat_at", "worker", "dispatched_at"])
        if run.status == RunStatus.RUNNING:
            move_run(run.pk, RunStatus.QUEUED, reason="the worker running it stopped answering")
        move_run(run.pk, RunStatus.RUNNING, attempt=job.attempts, worker=job.worker)
    return job, job.attempts


class Heartbeat(threading.Thread):
    """Keeps the claim fresh and notices cancellation from the agent's start until the contract check's end (the
    results are collected and checked under the same claim): a cancel kills what the sandbox runs then."""

    def __init__(self, job_id: int, on_cancel: Callable[[], None]):
        super().__init__(daemon=True, name="jetty-heartbeat")
        self.job_id, self.on_cancel = job_id, on_cancel
        self.stopped = threading.Event()

    def run(self) -> None:
        cancelled = False
        try:
            while not self.stopped.wait(Job.HEARTBEAT_EVERY.total_seconds()):
                Job.objects.filter(pk=self.job_id).update(heartbeat_at=timezone.now())
                if not cancelled and Job.objects.filter(pk=self.job_id, cancel_requested=True).exists():
                    cancelled = True  # and beating on: the run is still this worker's until it has ended
                    self.on_cancel()
        finally:
            close_old_connections()


def execute(run_id: int) -> None:
    if Run.objects.filter(pk=run_id, kind=RunKind.WORKFLOW).exists():
        from .workflows.engine import advance

        advance(run_id)
        return
    claimed = claim(run_id)
    if claimed is None:
        return
    job, attempt = claimed
    run = Run.objects.select_related("org").get(pk=run_id)
    destroy_leftovers(run.public_id)
    agent = agent_for(run.agent, run.model)
    if agent is None:
        end_run(run.pk, RunStatus.FAILED, error_kind=ErrorKind.USER, error=f"unknown agent {run.agent!r}")
        return
    # Sandboxes reach the gateway through its unix socket and a relay inside, whatever their network: only one
    # sharing the host's network (JETTY_SANDBOX_HOST_NETWORK) calls JETTY_SANDBOX_GATEWAY_URL directly.
    host_network = job.network and settings.JETTY_SANDBOX_HOST_NETWORK
    upstream = None if host_network else settings.JETTY_GATEWAY_SOCKET
    if upstream and not Path(upstream).exists():
        raise PlatformError(f"sandboxes need the gateway listening on {upstream}")
    name = f"{run.public_id}-a{attempt}"
    try:
        with gateway_door(upstream, name, settings.JETTY_SANDBOX_GATEWAY_CONNECTIONS) as door:
            run_in_sandbox(run, job, agent, name, host_network, door)
    except SandboxUnavailable as exc:  # the door did not open: another attempt may do better
        raise PlatformError(f"could not open the sandbox's gateway socket: {exc}") from exc


def run_in_sandbox(run: Run, job: Job, agent: Agent, name: str, host_network: bool, door: str | None) -> None:
    """Provision the sandbox, run the agent in it, collect, destroy it, and end the run. ``door`` is the socket it
    reaches the gateway through (None on the host's network)."""
    spec = SandboxSpec(
        name=name,
        snapshot=run.snapshot or "general",
        network=job.network,
        host_network=host_network,
        limits=sandbox_limits(job.limits, wall_s=float(job.timeout_s)),
        gateway_socket=door,
        extra_binds=agent.binds(),
    )
    try:
        sandbox = create_sandbox(spec)
    except Exception as exc:
        raise PlatformError(f"could not provision a sandbox: {exc}") from exc
    try:
        place_uploads(job, sandbox.workspace)
    except (IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
        sandbox.destroy()  # the tenant's own files collide ("d" and "d/e"): no other attempt would do better
        end_run(run.pk, RunStatus.FAILED, error_kind=ErrorKind.USER, error=f"the run's files collide: {exc}")
        return
    except Exception as exc:
        sandbox.destroy()
        raise PlatformError(f"could not place the run's files: {exc}") from exc
    token = RunToken.mint(run, ttl_s=job.timeout_s + 300)
    heartbeat = None
    try:
        mission = Mission(
            runbook=job.runbook,
            instruction=job.instruction,
            model=run.model,
            gateway_url=settings.JETTY_SANDBOX_GATEWAY_URL if host_network else f"http://127.0.0.1:{RELAY_PORT}/v1",
            run_token=token,
            network=job.network,
        )
        launch = agent.launch(mission, sandbox.home)
        sandbox.hand_over(sandbox.home)
        if agent.version:
            Run.objects.filter(pk=run.pk).update(metadata={**run.metadata, "agent_version": agent.version})
            recorded = (run.metadata.get("replay") or {}).get("agent_version")
            if recorded and recorded != agent.version:
                warning = {"message": f"replaying with {run.agent} {agent.version}; the recording used {recorded}"}
                append_events(run.pk, [EventRecord(kind="log", ts=time.time(), payload=warning)])
        argv = launch.argv if host_network else with_gateway_relay(launch.argv)
        # The collection's variables and the secrets the runbook declares; the agent's own settings win.
        try:
            execution = sandbox.start(argv, {**job.env, **job.secrets, **launch.env})
        except SandboxUnavailable as exc:  # its network could not be attached, say: another attempt may work
            raise PlatformError(f"could not start the sandbox: {exc}") from exc
        heartbeat = Heartbeat(job.pk, lambda: sandbox.current.kill() if sandbox.current else None)
        heartbeat.start()
        if terms_of(job.runbook).script is not None:
            sandbox.prepare_script()  # the contract check will run the Final Checklist's script
        Timeline(run.pk, agent, sandbox.workspace, Masker(job.secrets)).follow(execution.lines())
        outcome = execution.wait()
        flush_pending_calls(run.pk)  # a call whose answer the agent never read to the end
        collect(run, job, sandbox.workspace, agent.final)
        RunToken.revoke_all(run.pk)  # nothing after the agent may call the gateway as the run
        contract = check_contract_of(run, job, outcome, agent, sandbox)
        heartbeat.stopped.set()
    finally:
        if heartbeat is not None:
            heartbeat.stopped.set()
        RunToken.revoke_all(run.pk)
        sandbox.destroy()
    # Only once the sandbox is gone does the run end: whoever sees a final state sees nothing left behind.
    check_reported_usage(run, agent)
    finish(run, job, outcome, agent, contract)


def check_contract_of(run: Run, job: Job, outcome: Outcome, agent: Agent, sandbox: Sandbox) -> dict[str, Any] | None:
    """The platform's check of the runbook's contract, once the agent ended well by its own account (None when it
    did not: the run has failed already), recorded on the run, as an event and as labels."""
    job.refresh_from_db(fields=["cancel_requested"])
    if job.cancel_requested or outcome.exit_code != 0 or outcome.user_error or agent.problem():
        return None
    env = {**job.env, **job.secrets}
    try:
        verdict = check_contract(
            job.runbook, sandbox.workspace, job.validation, sandbox, env, job.contract_mode, Masker(job.secrets)
        )
    except SandboxUnavailable as exc:
        raise PlatformError(f"could not run the contract check: {exc}") from exc
    job.refresh_from_db(fields=["cancel_requested"])
    if job.cancel_requested:  # cancelled while it was checked: the verdict is of a run that will not end on it
        return None
    record_contract(run, verdict)
    return verdict


def check_reported_usage(run: Run, agent: Agent) -> None:
    """Cross-check the tokens the agent's result line reported against the gateway's own count of its calls."""
    if not agent.reported:
        return
    run.refresh_from_db(fields=["prompt_tokens", "completion_tokens", "metadata"])
    gateway = {"input_tokens": run.prompt_tokens, "output_tokens": run.completion_tokens}
    reported = {k: agent.reported.get(k) for k in gateway}
    agrees = reported == gateway
    run.metadata = {**run.metadata, "agent_reported": agent.reported, "usage_agrees": agrees}
    run.save(update_fields=["metadata"])
    if not agrees:
        message = f"{agent.name} reported usage {reported}; the gateway counted {gateway}"
        warning = {"level": "warning", "message": message}
        append_events(run.pk, [EventRecord(kind="log", ts=time.time(), payload=warning)])


def place_uploads(job: Job, workspace: Path) -> None:
    """Copy the run's uploads to /app/assets (paths were made safe when uploaded), through the one writer that
    never follows a link in the sandbox's tree."""
    for upload in Upload.objects.filter(org=job.org, key__in=job.file_paths):
        with upload.file.open("rb") as source:
            hostile.write(workspace, f"assets/{upload.path}", source)


def collect(run: Run, job: Job, workspace: Path, final_answer: str | None) -> None:
    """Store /app/results as artifacts; read the validation report and summary.

    All of it is read through ``hostile``: the agent may have left links, hard links, FIFOs or a results folder
    that is itself a link, and the worker must not read a host file for it. What was not kept is said in the log.
    """
    skipped: list[str] = []
    room = storage_room(run.org_id)
    kept = 0
    job.validation = None  # an earlier attempt's report is not this one's
    for entry in hostile.walk(workspace, "results"):
        if kept >= MAX_ARTIFACTS:
            skipped.append(f"/app/results holds more than {MAX_ARTIFACTS} files: the rest were not kept")
            break
        if len(entry.path) > MAX_ARTIFACT_PATH:
            skipped.append(
                f"/app/results/{entry.path[:80]}… has a path over {MAX_ARTIFACT_PATH} characters and was not kept"
            )
            continue
        try:
            if entry.refused:
                raise hostile.Unreadable(f"results/{entry.path}", entry.refused)
            data = hostile.read(workspace, f"results/{entry.path}", MAX_ARTIFACT_BYTES)
        except hostile.Unreadable as exc:
            if not exc.missing:
                skipped.append(f"/app/{exc} and was not kept")
            continue
        if room is not None and len(data) > room:
            limit = settings.JETTY_ORG_MAX_STORED_BYTES
            not_kept(run, f"/app/results/{entry.path} was not kept: the org's storage limit of {limit} bytes is "
                     "reached (JETTY_ORG_MAX_STORED_BYTES)", code="org_storage_limit")  # fmt: skip
            continue
        room = None if room is None else room - len(data)
        Artifact.objects.filter(run=run, path=entry.path).delete()
        artifact = Artifact(
            run=run,
            path=entry.path,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            content_type=mimetypes.guess_type(entry.path)[0] or "application/octet-stream",
        )
        artifact.file.save(stored_file_name(run.public_id, entry.path), ContentFile(data), save=False)
        artifact.save()
        kept += 1
    report = _result_file(workspace, "validation_report.json", skipped)
    if report is not None:
        job.validation = parse_validation_report(report)
    summary = _result_file(workspace, "summary.md", skipped)
    job.final_answer = storable(final_answer or (summary.decode(errors="replace") if summary is not None else ""))
    job.save(update_fields=["validation", "final_answer"])
    if skipped:
        now = time.time()
        records = [EventRecord(kind="log", ts=now, payload={"message": sanitise(m)}) for m in dict.fromkeys(skipped)]
        append_events(run.pk, records)
    if isinstance(job.validation, dict):
        label_validation(run, job.validation)


def parse_validation_report(data: bytes) -> dict[str, Any]:
    """The agent's validation report as it may be stored, or an error saying why it cannot be: it is hostile input
    (NaN, 1e400, nesting deep enough to exhaust the parser, NUL characters, lone surrogates)."""

    def finite(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"{text} is not a finite number")
        return value

    def refuse(text: str) -> None:
        raise ValueError(f"{text} is not JSON")

    try:
        report = json.loads(data, parse_float=finite, parse_constant=refuse)
    except (ValueError, RecursionError) as exc:
        return {"error": f"validation_report.json is not valid JSON: {str(exc)[:200]}"}
    if not isinstance(report, dict):
        return {"error": "validation_report.json is not a JSON object"}
    if nesting(report) > MAX_REPORT_NESTING:
        return {"error": f"validation_report.json nests deeper than {MAX_REPORT_NESTING} levels"}
    return storable(report)


def nesting(value: Any) -> int:
    """How deep a parsed JSON value nests, found without recursion (a hostile one may nest thousands deep)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        deepest = max(deepest, depth)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def not_kept(run: Run, message: str, code: str = "") -> None:
    """Say in the trajectory that a result file was left out, and why."""
    payload = {"level": "warning", "message": message, **({"code": code} if code else {})}
    append_events(run.pk, [EventRecord(kind="log", ts=time.time(), payload=payload)])


def _result_file(workspace: Path, name: str, skipped: list[str]) -> bytes | None:
    """A file the platform reads from /app/results (summary, validation report), or None if it is not there or
    could not be read safely (said in ``skipped``)."""
    try:
        return hostile.read(workspace, f"results/{name}", MAX_RESULT_FILE_BYTES)
    except hostile.Unreadable as exc:
        if not exc.missing:
            skipped.append(f"/app/{exc} and was not read")
        return None


def label_validation(run: Run, report: dict) -> None:
    """The validation report as the platform's labels: overall pass, each stage, the rubric's scores."""
    found: dict[str, object] = {}
    if isinstance(report.get("overall_passed"), bool):
        found["validation.overall_passed"] = report["overall_passed"]
    for stage in report.get("stages") or []:
        if isinstance(stage, dict) and isinstance(stage.get("name"), str) and isinstance(stage.get("passed"), bool):
            found[f"validation.stage.{stage['name'][:100]}"] = stage["passed"]
    if isinstance(report.get("overall_score"), int | float):
        found["validation.overall_score"] = report["overall_score"]
    scores = report.get("rubric_scores")
    for criterion, score in scores.items() if isinstance(scores, dict) else []:
        if isinstance(score, int | float):
            found[f"validation.score.{str(criterion)[:100]}"] = score
    for key, value in found.items():
        record_label(run, key, value, source=LabelSource.SYSTEM, author="system")


def finish(run: Run, job: Job, outcome: Outcome, agent: Agent, contract: dict[str, Any] | None = None) -> None:
    mask = Masker(job.secrets)
    job.refresh_from_db(fields=["cancel_requested", "stop_reason"])
    problem = mask(agent.problem())
    outcome.stderr_tail = mask(outcome.stderr_tail)
    failed = outcome.timed_out or outcome.user_error or outcome.exit_code != 0 or problem
    if failed and outcome.stderr_tail.strip() and not job.cancel_requested:
        # The agent's own log goes into the trajectory, so a crash can be read after the sandbox is gone.
        log = {"stream": "stderr", "tail": sanitise(outcome.stderr_tail)}
        append_events(run.pk, [EventRecord(kind="log", ts=time.time(), payload=log)])
    if job.cancel_requested and job.stop_reason:
        end_run(run.pk, RunStatus.FAILED, error_kind=ErrorKind.USER, error=job.stop_reason)
    elif job.cancel_requested:
        end_run(run.pk, RunStatus.CANCELLED, error_kind=ErrorKind.USER, error="cancelled on request")
    elif outcome.timed_out:
        end_run(
            run.pk,
            RunStatus.TIMED_OUT,
            error_kind=ErrorKind.USER,
            error=f"wall time limit of {job.timeout_s} s exceeded",
        )
    elif outcome.user_error:
        error = limit_error(outcome, sandbox_limits(job.limits, wall_s=float(job.timeout_s)))
        end_run(run.pk, RunStatus.FAILED, error_kind=ErrorKind.USER, error=error)
    elif outcome.exit_code != 0:
        tail = outcome.stderr_tail.strip().splitlines()[-5:]
        reason = " | ".join(tail) or problem or "nothing on stderr"
        end_run(
            run.pk,
            RunStatus.FAILED,
            error_kind=ErrorKind.USER,
            error=f"the agent exited with code {outcome.exit_code}: {reason}",
        )
    elif problem:
        end_run(run.pk, RunStatus.FAILED, error_kind=ErrorKind.USER, error=problem)
    elif contract is not None and not contract["passed"] and contract["mode"] == ENFORCE:
        error = failure_message(contract)
        end_run(run.pk, RunStatus.FAILED, error_kind=ErrorKind.USER, error=error, error_code=CONTRACT_FAILED)
    else:
        end_run(run.pk, RunStatus.SUCCEEDED)
