"""``jetty mcp``: the CLI's verbs as MCP tools, for coding agents (Claude Code and any other MCP client).

Like the rest of ``jetty_cli`` it talks only to Jetty's HTTP API, with the URL and token from ``jetty login`` (or
``JETTY_URL``/``JETTY_TOKEN``). Over streamable HTTP a caller may send its own ``Authorization: Bearer <token>``,
which then replaces the stored token for that call, so one server can serve several people as themselves.
API errors come back as tool errors carrying the API's message.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse
from urllib.parse import quote as _quote

import httpx
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from trajectories import conversations

from .main import Failure, checked, client

FINAL = {"succeeded", "failed", "cancelled", "timed_out"}
INSTRUCTIONS = """Jetty runs AI coding agents in sandboxes on markdown runbooks and records every step.
Runbooks are stored as versioned tasks in collections. Write a runbook, check it with validate_runbook until it
has no errors, store it with push_task, start it with run_task (returns at once) or run_task_sync (waits), follow
get_trajectory with the returned next_after until done is true, then read_artifact for summary.md,
validation_report.json and the primary outputs."""

server = MCPServer("jetty", instructions=INSTRUCTIONS)


# Talking to the API


def _bearer(ctx: Context | None) -> str | None:
    """The caller's own token, when it came over HTTP with one."""
    try:
        headers = ctx.headers if ctx is not None else None
    except ValueError:  # no request in flight
        return None
    value = (headers or {}).get("authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@contextmanager
def api(ctx: Context | None) -> Iterator[httpx.Client]:
    """An HTTP client for the API; its failures become tool errors with the API's own message."""
    try:
        with client(token=_bearer(ctx)) as http:
            yield http
    except Failure as failure:
        raise ToolError(str(failure)) from None
    except httpx.HTTPError as exc:
        raise ToolError(f"cannot reach Jetty: {exc}") from None


def quote(segment: str) -> str:
    """One path segment of a URL, with nothing in it that could climb out of the route."""
    return _quote(segment, safe="")


def _json(response: httpx.Response) -> Any:
    return checked(response).json()


def _drop_none(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != ""}


def _clip(value: Any, limit: int) -> Any:
    """The value itself when its JSON fits in ``limit`` characters, else its JSON cut to that length."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) <= limit:
        return value
    return text[:limit] + f"… [{len(text) - limit} more characters]"


# Collections


@server.tool()
def list_collections(ctx: Context) -> dict[str, Any]:
    """The collections this token can see, each with its description and number of tasks."""
    with api(ctx) as http:
        return {"collections": _json(http.get("/api/v1/collections"))["data"]}


@server.tool()
def create_collection(name: str, ctx: Context, description: str = "") -> dict[str, Any]:
    """Create a collection (a folder of tasks with its own environment and secrets).
    `name`: lower-case letters, digits, `-` or `_`."""
    with api(ctx) as http:
        return _json(http.post("/api/v1/collections", json={"name": name, "description": description}))


# Tasks


@server.tool()
def list_tasks(collection: str, ctx: Context) -> dict[str, Any]:
    """The tasks of a collection: name, kind (runbook or workflow), latest version."""
    with api(ctx) as http:
        return {"tasks": _json(http.get(f"/api/v1/collections/{quote(collection)}/tasks"))["data"]}


@server.tool()
def get_task(collection: str, task: str, ctx: Context, version: int | None = None) -> dict[str, Any]:
    """A stored task with the content of its latest version (or of `version`), and the list of its versions."""
    base = f"/api/v1/collections/{quote(collection)}/tasks/{quote(task)}"
    with api(ctx) as http:
        found = _json(http.get(base))
        if version is not None:
            found["version"] = _json(http.get(f"{base}/versions/{version}"))
        found["versions"] = _json(http.get(f"{base}/versions"))["data"]
        return found


@server.tool()
def push_task(
    collection: str,
    task: str,
    ctx: Context,
    runbook: str | None = None,
    workflow: dict[str, Any] | None = None,
    files: dict[str, str] | None = None,
    message: str = "",
    description: str = "",
) -> dict[str, Any]:
    """Store a new version of a task (created on first push): either `runbook` (the markdown) or `workflow`
    (`{init_params, step_configs, steps}`), with optional `files` (other text files of the runbook folder, by
    relative path). The server validates it and refuses a version with errors; run validate_runbook first to see
    every finding. Pushing the same content as the latest version stores nothing new."""
    body = _drop_none(name=task, runbook=runbook, workflow=workflow, files=files, message=message)
    body |= _drop_none(description=description)
    with api(ctx) as http:
        return _json(http.post(f"/api/v1/collections/{quote(collection)}/tasks", json=body))


@server.tool()
def task_diff(
    collection: str, task: str, ctx: Context, from_version: int | None = None, to_version: int | None = None
) -> dict[str, Any]:
    """A unified diff between two versions of a task (default: the one before the latest, and the latest)."""
    params = _drop_none(**{"from": from_version, "to": to_version})
    with api(ctx) as http:
        return _json(http.get(f"/api/v1/collections/{quote(collection)}/tasks/{quote(task)}/diff", params=params))


@server.tool()
def validate_runbook(runbook: str, ctx: Context) -> dict[str, Any]:
    """Check a runbook's markdown: `valid`, and its `errors` (it cannot work as written) and `warnings`, each with
    a code, a message and its line. Fix every error and validate again before push_task."""
    with api(ctx) as http:
        return _json(http.post("/api/v1/runbooks/validate", json={"runbook": runbook}))


# Running


def _uploads(ctx: Context, files: list[str] | None) -> list[tuple[str, tuple[str, bytes, str]]]:
    """The local files to send with a run. They are read on the MCP server's machine, so only a caller using the
    server's own login may name them: a caller that brought its own token over HTTP must not read them."""
    if not files:
        return []
    if _bearer(ctx) is not None:
        raise ToolError(
            "`files` are read on the machine the MCP server runs on, which this caller (with its own token) may not "
            "do; run `jetty mcp` on your own machine to upload files"
        )
    uploads = []
    for name in files:
        path = Path(name).expanduser()
        if not path.is_file():
            raise ToolError(f"no such file: {name} (files are read on the machine the MCP server runs on)")
        uploads.append(("files", (path.name, path.read_bytes(), mimetypes.guess_type(path.name)[0] or "")))
    return uploads


def _start(
    ctx: Context,
    route: str,
    collection: str,
    task: str,
    *,
    init_params: dict[str, Any] | None,
    secret_params: dict[str, str] | None,
    files: list[str] | None,
    fields: dict[str, Any],
) -> dict[str, Any]:
    """Start a run of a stored task: JSON, or multipart when there are files to upload."""
    url = f"/api/v1/{route}/{quote(collection)}/{quote(task)}"
    uploads = _uploads(ctx, files)
    with api(ctx) as http:
        if not uploads:
            return _json(
                http.post(url, json=_drop_none(init_params=init_params, secret_params=secret_params, **fields))
            )
        data = {k: str(v) for k, v in fields.items()}
        data |= {k: json.dumps(v) for k, v in (("init_params", init_params), ("secret_params", secret_params)) if v}
        return _json(http.post(url, data=data, files=uploads))


RUN_ARGS = """`init_params` fill the runbook's {{variables}} (or a workflow's init_params); `secret_params` reach the
sandbox as environment variables for this run only and are never stored; `files` are local paths uploaded to
/app/assets; `model` (e.g. `scripted/default`, `openai/gpt-4o-mini`), `agent` (`jetty-agent`,
`claude-code`, `codex`, `gemini-cli`) and `version` override the task's own."""


@server.tool(
    description="Start a run of a stored task and return at once with its run_id (status queued).\n" + RUN_ARGS
)
def run_task(
    collection: str,
    task: str,
    ctx: Context,
    init_params: dict[str, Any] | None = None,
    secret_params: dict[str, str] | None = None,
    files: list[str] | None = None,
    model: str | None = None,
    agent: str | None = None,
    version: int | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> dict[str, Any]:
    fields = _drop_none(
        model=model, agent=agent, version=version, webhook_url=webhook_url, webhook_secret=webhook_secret
    )
    return _start(
        ctx,
        "run",
        collection,
        task,
        init_params=init_params,
        secret_params=secret_params,
        files=files,
        fields=fields,
    )


@server.tool(
    description="Run a stored task and wait until it ends: status, results_files, validation, usage, cost, "
    "error. If the server's wait runs out first the status is still queued or running; follow it with "
    "get_trajectory.\n" + RUN_ARGS
)
def run_task_sync(
    collection: str,
    task: str,
    ctx: Context,
    init_params: dict[str, Any] | None = None,
    secret_params: dict[str, str] | None = None,
    files: list[str] | None = None,
    model: str | None = None,
    agent: str | None = None,
    version: int | None = None,
) -> dict[str, Any]:
    fields = _drop_none(model=model, agent=agent, version=version)
    return _start(
        ctx,
        "run-sync",
        collection,
        task,
        init_params=init_params,
        secret_params=secret_params,
        files=files,
        fields=fields,
    )


# Runs and trajectories


@server.tool()
def list_runs(
    ctx: Context,
    task: str | None = None,
    collection: str | None = None,
    status: str | None = None,
    model: str | None = None,
    agent: str | None = None,
    kind: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Recorded runs, newest first, filtered by task, collection, status (queued, running, succeeded, failed,
    cancelled, timed_out), model, agent or kind. Pass `next_cursor` back as `cursor` for the next page."""
    params = _drop_none(
        task=task, collection=collection, status=status, model=model, agent=agent, kind=kind, cursor=cursor
    )
    params["limit"] = max(1, min(limit, 200))
    keep = ("id", "collection", "task", "kind", "status", "model", "agent", "error", "total_tokens", "cost_usd")
    with api(ctx) as http:
        page = _json(http.get("/api/v1/runs", params=params))
    runs = [{k: run.get(k) for k in (*keep, "created", "duration_s")} for run in page["results"]]
    following = parse_qs(urlparse(page["next"]).query).get("cursor", [None])[0] if page.get("next") else None
    return {"runs": runs, "next_cursor": following}


@server.tool()
def get_run(run_id: str, ctx: Context) -> dict[str, Any]:
    """A run's header (status, task, model, agent, tokens, cost, timings, error), its result files, and for a
    workflow run its steps."""
    with api(ctx) as http:
        run = _json(http.get(f"/api/v1/runs/{quote(run_id)}"))
        run["artifacts"] = [
            {k: a[k] for k in ("path", "size", "content_type")}
            for a in _json(http.get(f"/api/v1/runs/{quote(run_id)}/artifacts"))["data"]
        ]
        if run.get("kind") == "workflow":
            run["steps"] = _json(http.get(f"/api/v1/runs/{quote(run_id)}/steps"))["data"]
    return run


def _answer(payload: dict[str, Any]) -> Any:
    """What a model call answered (its text and tool calls), read the same in every wire; a response it cannot
    read, as it is."""
    answer = conversations.answer(payload.get("wire") or "chat", payload.get("response"))
    if answer.empty:
        return payload.get("response")
    calls = [
        {"name": c.name, "arguments": c.arguments if isinstance(c.arguments, str) else json.dumps(c.arguments)}
        for c in answer.tool_calls
    ]
    return _drop_none(content=answer.text or None, tool_calls=calls or None)


def compact_event(event: dict[str, Any], limit: int) -> dict[str, Any]:
    """One event, small enough to read in bulk: the accounting of a model call and an excerpt of its answer;
    any other payload cut to ``limit`` characters."""
    out: dict[str, Any] = {k: event[k] for k in ("seq", "kind", "ts") if k in event}
    if event.get("span"):
        out["span"] = event["span"]
    payload = event.get("payload")
    if event.get("kind") == "model.call" and isinstance(payload, dict):
        out |= _drop_none(
            model=event.get("model"),
            prompt_tokens=event.get("prompt_tokens"),
            completion_tokens=event.get("completion_tokens"),
            latency_ms=event.get("latency_ms"),
            finish_reason=payload.get("finish_reason"),
            error=payload.get("error"),
        )
        out["response"] = _clip(_answer(payload), limit)
    else:
        out["payload"] = _clip(payload, limit)
    return out


@server.tool()
def get_trajectory(
    run_id: str,
    ctx: Context,
    after: int = 0,
    limit: int = 50,
    kinds: list[str] | None = None,
    max_chars: int = 400,
) -> dict[str, Any]:
    """A run's events after the `after` cursor (seq), compacted: model calls as their accounting and an excerpt of
    the answer, other payloads cut to `max_chars`. `kinds` keeps only those kinds (run.state, model.call,
    agent.message, tool.call, tool.result, command, file.change, log, step.start, step.end, error). To follow a
    run, call again with `after=next_after` until `has_more` is false and `done` is true."""
    with api(ctx) as http:
        params = {"after": max(after, 0), "limit": max(1, min(limit, 500))}
        page = _json(http.get(f"/api/v1/runs/{quote(run_id)}/events", params=params))
        status = _json(http.get(f"/api/v1/runs/{quote(run_id)}"))["status"]
    events = [e for e in page["data"] if not kinds or e.get("kind") in kinds]
    return {
        "run_id": run_id,
        "status": status,
        "done": status in FINAL and not page["has_more"],
        "events": [compact_event(e, max(max_chars, 40)) for e in events],
        "next_after": page["next_after"],
        "has_more": page["has_more"],
    }


@server.tool()
def list_artifacts(run_id: str, ctx: Context) -> dict[str, Any]:
    """A run's result files (from /app/results): path, size, sha256, content type."""
    with api(ctx) as http:
        found = _json(http.get(f"/api/v1/runs/{quote(run_id)}/artifacts"))["data"]
    return {"run_id": run_id, "artifacts": [{k: v for k, v in a.items() if k != "url"} for a in found]}


@server.tool()
def read_artifact(run_id: str, path: str, ctx: Context, max_chars: int = 50000) -> dict[str, Any]:
    """The text of one result file of a run (`path` as list_artifacts gives it), cut to `max_chars`. A binary file
    is described, not returned."""
    with api(ctx) as http:
        response = checked(http.get(f"/api/v1/runs/{quote(run_id)}/artifacts/{_quote(path)}"))
    info = {"run_id": run_id, "path": path, "size": len(response.content)}
    try:
        text = response.content.decode()
    except UnicodeDecodeError:
        return info | {"binary": True, "content_type": response.headers.get("content-type")}
    return info | {"text": text[:max_chars], "truncated": len(text) > max_chars}


@server.tool()
def cancel_run(run_id: str, ctx: Context) -> dict[str, Any]:
    """Cancel a run: a queued run ends at once, a running one when its worker has stopped the sandbox."""
    with api(ctx) as http:
        run = _json(http.post(f"/api/v1/runs/{quote(run_id)}/cancel"))
    return {"run_id": run["id"], "status": run["status"], "error": run.get("error")}


@server.tool()
def labels(run_id: str, ctx: Context) -> dict[str, Any]:
    """The labels on a run: human reviewers', judges' verdicts (`eval.grade`, `eval.pass`, `score.<criterion>`)
    and the platform's from the validation report (`validation.*`), each with its author."""
    with api(ctx) as http:
        found = _json(http.get(f"/api/v1/runs/{quote(run_id)}/labels"))
    return {"run_id": run_id, "labels": found["data"]}


# Catalogue and secrets


@server.tool()
def step_templates(ctx: Context, step_type: str | None = None) -> dict[str, Any]:
    """The workflow step types. Without `step_type`: each type's category and description; with one: its params
    and outputs schemas."""
    with api(ctx) as http:
        found = _json(http.get("/api/v1/step-templates"))["data"]
    if step_type is None:
        return {"step_types": [{k: s[k] for k in ("type", "category", "description")} for s in found]}
    for template in found:
        if template["type"] == step_type:
            return template
    raise ToolError(f"unknown step type {step_type!r}; known: {', '.join(s['type'] for s in found)}")


@server.tool()
def check_secrets(
    collection: str, ctx: Context, names: list[str] | None = None, task: str | None = None
) -> dict[str, Any]:
    """Which secrets are set on a collection, by `names` or those the runbook `task` declares; never their values.
    `missing` lists the required ones not set; `ok` is true when none is missing."""
    params = _drop_none(names=",".join(names or []), task=task)
    with api(ctx) as http:
        return _json(http.get(f"/api/v1/collections/{quote(collection)}/secrets/check", params=params))


def serve(http: bool = False, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve the tools over stdio (what Claude Code starts), or over streamable HTTP at ``/mcp``."""
    if http:
        server.run("streamable-http", host=host, port=port)
    else:
        server.run("stdio")
