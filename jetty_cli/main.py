"""``jetty``: the command line for a Jetty server, talking only to its HTTP API.

    jetty login --url URL [--token T]       store the server and a token (~/.config/jetty, mode 600)
    jetty validate RUNBOOK.md               the validator's errors and warnings; exit 1 on errors
    jetty push DIR [--collection C] [--name N] [-m MSG]  store a runbook folder as a new version of a task
    jetty diff COLLECTION/TASK [--from N] [--to M]       what changed between two versions
    jetty gate [EXPERIMENT | --start SPEC.json] --rule JSON [--report F] [--github-repo O/N --pr N]
                                            a quality gate over an experiment: exit 1 when it fails
    jetty run RUNBOOK.md [--param k=v] [--file F] [--model M] [--agent A]
                                            run it (the jetty block from the frontmatter), streaming progress
    jetty status ID | jetty logs ID | jetty download ID [--dir D]
    jetty mcp [--http --host H --port P]      the same verbs and more as MCP tools (stdio, or streamable HTTP)

``JETTY_URL`` and ``JETTY_TOKEN`` override what ``login`` stored.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

CONFIG = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "jetty"
FRONTMATTER_FIELDS = {"agent": "agent", "snapshot": "snapshot", "model_provider": "model_provider"}


class Failure(Exception):
    """A clear message for the user, and a non-zero exit."""


def settings(token: str | None = None) -> tuple[str, str]:
    """The server's URL and the token to use: ``token`` when given, else the environment's or the stored one."""
    url = os.environ.get("JETTY_URL") or _read(CONFIG / "url")
    token = token or os.environ.get("JETTY_TOKEN") or _read(CONFIG / "token")
    if not url or not token:
        raise Failure("not logged in: run `jetty login --url URL` (or set JETTY_URL and JETTY_TOKEN)")
    return url.rstrip("/"), token


def _read(path: Path) -> str:
    return path.read_text().strip() if path.is_file() else ""


def client(token: str | None = None) -> httpx.Client:
    url, token = settings(token)
    return httpx.Client(
        base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=httpx.Timeout(30, read=None)
    )


def checked(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:500]
        raise Failure(f"{response.status_code}: {message}")
    return response


def login(args: argparse.Namespace) -> int:
    token = args.token or input("API token: ").strip()
    response = httpx.get(f"{args.url.rstrip('/')}/v1/models", headers={"authorization": f"Bearer {token}"})
    checked(response)
    CONFIG.mkdir(parents=True, exist_ok=True)
    for name, value in (("url", args.url.rstrip("/")), ("token", token)):
        path = CONFIG / name
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(value + "\n")
    print(f"logged in to {args.url}; {len(response.json()['data'])} models available")
    return 0


def validate(args: argparse.Namespace) -> int:
    with client() as http:
        report = checked(
            http.post("/api/v1/runbooks/validate", json={"runbook": Path(args.runbook).read_text()})
        ).json()
    for level in ("errors", "warnings"):
        for finding in report[level]:
            where = f"{args.runbook}:{finding['line']}" if finding.get("line") else args.runbook
            print(f"{where}: {level[:-1]}: {finding['message']} [{finding['code']}]")
    print(f"{len(report['errors'])} error(s), {len(report['warnings'])} warning(s)")
    return 0 if report["valid"] else 1


def frontmatter(text: str) -> dict[str, Any]:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    loaded = yaml.safe_load("\n".join(lines[1:end])) if end else None
    return loaded if isinstance(loaded, dict) else {}


TEXT_SUFFIXES = {".md", ".txt", ".json", ".yaml", ".yml", ".csv", ".diff", ".patch", ".py", ".sh", ".html", ".xml"}
MAX_FOLDER_BYTES = 5 * 1024 * 1024


def folder_files(folder: Path, main: Path) -> dict[str, str]:
    """The folder's other text files (README.md, examples/<id>/…), by relative path."""
    files: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path == main or not path.is_file() or any(p.startswith(".") for p in relative.parts):
            continue
        if path.suffix.lower() not in TEXT_SUFFIXES:
            print(f"skipping {relative} (not a text file)", file=sys.stderr)
            continue
        files[relative.as_posix()] = path.read_text(errors="replace")
    if sum(len(v) for v in files.values()) > MAX_FOLDER_BYTES:
        raise Failure(f"{folder}: the folder's text files hold more than {MAX_FOLDER_BYTES} bytes")
    return files


def push(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    if folder.is_file():
        folder = folder.parent
    runbook, workflow = folder / "RUNBOOK.md", folder / "workflow.json"
    if not runbook.is_file() and not workflow.is_file():
        raise Failure(f"{folder}: no RUNBOOK.md or workflow.json in it")
    main = runbook if runbook.is_file() else workflow
    body: dict[str, Any] = {"name": args.name or folder.resolve().name.lower(), "message": args.message or ""}
    if main is runbook:
        body["runbook"] = runbook.read_text()
    else:
        try:
            body["workflow"] = json.loads(workflow.read_text())
        except ValueError as exc:
            raise Failure(f"{workflow}: not valid JSON: {exc}") from None
    body["files"] = folder_files(folder, main)
    with client() as http:
        created = http.post("/api/v1/collections", json={"name": args.collection})
        if created.status_code != 409:
            checked(created)
        result = checked(http.post(f"/api/v1/collections/{args.collection}/tasks", json=body)).json()
    version = result["version"]
    for finding in version["validation"].get("warnings", []):
        where = f"{main}:{finding['line']}" if finding.get("line") else str(main)
        print(f"{where}: warning: {finding['message']} [{finding['code']}]")
    print(
        f"pushed {args.collection}/{result['name']} version {version['version']} ({len(body['files'])} other file(s))"
    )
    return 0


def diff(args: argparse.Namespace) -> int:
    collection, _, task = args.task.rpartition("/")
    if not collection:
        raise Failure("name the task as COLLECTION/TASK")
    params = {k: v for k, v in (("from", args.old), ("to", args.new)) if v is not None}
    with client() as http:
        print(checked(http.get(f"/api/v1/collections/{collection}/tasks/{task}/diff", params=params)).json()["diff"])
    return 0


GITHUB_API = "https://api.github.com"


def post_pr_comment(repo: str, pr: int, body: str) -> str:
    """Post the report as a comment on a pull request through GitHub's REST API; returns the comment's URL."""
    token = os.environ.get("GITHUB_TOKEN")
    if not token:
        raise Failure("posting to GitHub needs GITHUB_TOKEN")
    base = os.environ.get("GITHUB_API_URL", GITHUB_API).rstrip("/")
    response = httpx.post(
        f"{base}/repos/{repo}/issues/{pr}/comments",
        json={"body": body},
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        },
        timeout=30,
    )
    if response.is_error:
        raise Failure(f"GitHub answered {response.status_code}: {response.text[:300]}")
    return str(response.json().get("html_url", ""))


def gate(args: argparse.Namespace) -> int:
    """Run (``--start SPEC.json``) or read an experiment, apply the rule, write the report; exit 1 when it fails."""
    try:
        rule = json.loads(args.rule)
    except ValueError as exc:
        raise Failure(f"--rule is not JSON: {exc}") from None
    with client() as http:
        experiment = args.experiment
        if args.start:
            spec = json.loads(Path(args.start).read_text())
            experiment = checked(http.post("/api/v1/experiments", json=spec)).json()["id"]
            print(f"started experiment {experiment}", file=sys.stderr)
        if not experiment:
            raise Failure("name an experiment, or start one with --start SPEC.json")
        deadline = time.monotonic() + args.timeout
        while True:
            state = checked(http.get(f"/api/v1/experiments/{experiment}")).json()
            if state["status"] in ("done", "failed") or not args.wait:
                break
            if time.monotonic() > deadline:
                raise Failure(f"experiment {experiment} still {state['status']} after {args.timeout} s")
            time.sleep(2)
        params = {"rule": json.dumps(rule), **({"model": args.model} if args.model else {})}
        verdict = checked(http.get(f"/api/v1/experiments/{experiment}/gate", params=params)).json()
    report = verdict["report"]
    if args.report:
        Path(args.report).write_text(report)
    else:
        print(report)
    if args.github_repo and args.pr:
        print(f"posted {post_pr_comment(args.github_repo, args.pr, report)}", file=sys.stderr)
    print(("gate passed: " if verdict["passed"] else "gate FAILED: ") + verdict["reason"], file=sys.stderr)
    return 0 if verdict["passed"] else 1


def run(args: argparse.Namespace) -> int:
    text = Path(args.runbook).read_text()
    meta = frontmatter(text)
    params = dict(pair.split("=", 1) for pair in args.param)
    jetty: dict[str, Any] = {"runbook": True, "task": Path(args.runbook).stem, "template_variables": params}
    jetty |= {key: meta[field] for field, key in FRONTMATTER_FIELDS.items() if meta.get(field)}
    if args.agent:
        jetty["agent"] = args.agent
    model = args.model or meta.get("model") or "scripted/default"
    with client() as http:
        if args.file:
            files = [("files", (Path(f).name, Path(f).read_bytes())) for f in args.file]
            jetty["file_paths"] = checked(http.post("/api/v1/sandbox/upload", files=files)).json()["file_paths"]
        body = {
            "model": model,
            "messages": [{"role": "system", "content": text}, {"role": "user", "content": args.instruction}],
            "stream": True,
            "jetty": jetty,
        }
        status = "unknown"
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.is_error:
                response.read()
                checked(response)
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                info = chunk.get("jetty") or {}
                if info.get("event") == "summary":
                    status = info.get("status", status)
                    print(f"{info.get('run_id')}: {status}")
                    content = (chunk.get("choices") or [{}])[0].get("delta", {}).get("content")
                    if content:
                        print(content)
                elif info.get("event"):
                    print(f"[{info.get('seq')}] {info['event']} {_brief(info.get('payload'))}")
    return 0 if status == "succeeded" else 1


def _brief(payload: Any) -> str:
    text = json.dumps(payload) if not isinstance(payload, str) else payload
    return text if len(text) <= 160 else text[:157] + "..."


def status(args: argparse.Namespace) -> int:
    with client() as http:
        found = checked(http.get(f"/api/v1/runs/{args.id}")).json()
    print(f"{found['id']}: {found['status']}  task={found['task']} model={found['model']} agent={found['agent']}")
    print(f"tokens={found['total_tokens']} cost=${found['cost_usd']:.6f} duration={found['duration_s']}s")
    if found.get("error"):
        print(f"error: {found['error']}")
    return 0


FINAL = ("succeeded", "failed", "cancelled", "timed_out")


def replay(args: argparse.Namespace) -> int:
    """Start a replay (or, with --at, a fork) of a finished agent run; with --wait, follow it to its end."""
    body: dict[str, Any] = {}
    if args.runbook:
        body["runbook"] = Path(args.runbook).read_text()
    if args.at is not None:
        body["at"] = args.at
    if args.model:
        body["model"] = args.model
    path = "fork" if args.at is not None else "replay"
    with client() as http:
        started = checked(http.post(f"/api/v1/runs/{args.id}/{path}", json=body)).json()
        run_id = started["run_id"]
        print(f"{path} of {args.id}: {run_id}")
        if not args.wait:
            return 0
        deadline = time.monotonic() + args.timeout
        while (found := checked(http.get(f"/api/v1/runs/{run_id}")).json())["status"] not in FINAL:
            if time.monotonic() > deadline:
                raise Failure(f"{run_id} still {found['status']} after {args.timeout} s")
            time.sleep(1)
    print(f"{run_id}: {found['status']}" + (f": {found['error']}" if found.get("error") else ""))
    return 0 if found["status"] == "succeeded" else 1


def logs(args: argparse.Namespace) -> int:
    after = 0
    with client() as http:
        while True:
            page = checked(http.get(f"/api/v1/runs/{args.id}/events", params={"after": after})).json()
            for event in page["data"]:
                print(f"[{event['seq']}] {event['kind']} {_brief(event['payload'])}")
            after = page["next_after"]
            if not page["has_more"]:
                return 0


def download(args: argparse.Namespace) -> int:
    target = Path(args.dir or args.id)
    with client() as http:
        artifacts = checked(http.get(f"/api/v1/runs/{args.id}/artifacts")).json()["data"]
        for artifact in artifacts:
            path = (target / artifact["path"]).resolve()
            if not path.is_relative_to(target.resolve()):
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(checked(http.get(artifact["url"])).content)
            print(f"{path} ({artifact['size']} bytes)")
    return 0


def mcp(args: argparse.Namespace) -> int:
    from .mcp_server import serve

    serve(http=args.http, host=args.host, port=args.port)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="jetty", description="The command line for a Jetty server.")
    commands = top.add_subparsers(dest="command", required=True)
    sub = commands.add_parser("login", help="store the server URL and an API token")
    sub.add_argument("--url", required=True)
    sub.add_argument("--token")
    sub.set_defaults(handler=login)
    sub = commands.add_parser("validate", help="check a runbook")
    sub.add_argument("runbook")
    sub.set_defaults(handler=validate)
    sub = commands.add_parser("run", help="run a runbook and stream its progress")
    sub.add_argument("runbook")
    sub.add_argument("--param", action="append", default=[], metavar="K=V")
    sub.add_argument("--file", action="append", default=[])
    sub.add_argument("--model")
    sub.add_argument("--agent")
    sub.add_argument("--instruction", default="Follow the runbook.")
    sub.set_defaults(handler=run)
    sub = commands.add_parser("push", help="store a runbook folder (RUNBOOK.md or workflow.json) as a new task version")
    sub.add_argument("folder")
    sub.add_argument("--collection", default=os.environ.get("JETTY_COLLECTION", "default"))
    sub.add_argument("--name", help="the task's name (default: the folder's)")
    sub.add_argument("--message", "-m")
    sub.set_defaults(handler=push)
    sub = commands.add_parser("diff", help="the diff between two versions of a task")
    sub.add_argument("task", metavar="COLLECTION/TASK")
    sub.add_argument("--from", dest="old", type=int)
    sub.add_argument("--to", dest="new", type=int)
    sub.set_defaults(handler=diff)
    for name, handler, helptext in (("status", status, "a run's state"), ("logs", logs, "a run's events")):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument("id")
        sub.set_defaults(handler=handler)
    for name, helptext in (
        ("replay", "run a finished agent run again, answered from its recording"),
        ("fork", "replay a run's first --at model calls, then go on live with --model"),
    ):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument("id")
        if name == "fork":
            sub.add_argument("--at", type=int, required=True, help="how many model calls to replay before going live")
            sub.add_argument("--model", help="the model to go on with (default: the run's own)")
        sub.add_argument("--runbook", help="a file with another runbook to use")
        sub.add_argument("--wait", action="store_true", help="wait for it to end; exit 1 unless it succeeded")
        sub.add_argument("--timeout", type=float, default=900)
        sub.set_defaults(handler=replay, **({} if name == "fork" else {"at": None, "model": None}))
    sub = commands.add_parser("download", help="a run's result files")
    sub.add_argument("id")
    sub.add_argument("--dir")
    sub.set_defaults(handler=download)
    sub = commands.add_parser("gate", help="apply a quality gate to an experiment; exit 1 when it fails")
    sub.add_argument("experiment", nargs="?", help="the experiment's id (or --start SPEC.json)")
    sub.add_argument("--start", metavar="SPEC.json", help="start this experiment first, then wait for it")
    sub.add_argument("--rule", required=True, help='JSON, e.g. {"metric": "pass_rate", "min": 0.8}')
    sub.add_argument("--model", help="the candidate model (default: the experiment's first)")
    sub.add_argument("--wait", action="store_true", help="wait until the experiment is done (implied by --start)")
    sub.add_argument("--timeout", type=float, default=3600)
    sub.add_argument("--report", help="write the markdown report here (default: stdout)")
    sub.add_argument("--github-repo", metavar="OWNER/NAME", help="post the report on this repository's PR")
    sub.add_argument("--pr", type=int, help="the pull request number (GITHUB_TOKEN, GITHUB_API_URL from env)")
    sub.set_defaults(handler=gate)
    sub = commands.add_parser("mcp", help="serve the commands as MCP tools (stdio, or streamable HTTP with --http)")
    sub.add_argument("--http", action="store_true", help="streamable HTTP at http://HOST:PORT/mcp instead of stdio")
    sub.add_argument("--host", default="127.0.0.1")
    sub.add_argument("--port", type=int, default=8765)
    sub.set_defaults(handler=mcp)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "start", None):
        args.wait = True
    try:
        return int(args.handler(args))
    except Failure as failure:
        print(f"jetty: {failure}", file=sys.stderr)
        return 2
    except (httpx.HTTPError, OSError) as exc:
        print(f"jetty: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
