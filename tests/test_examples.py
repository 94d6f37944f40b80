"""The runbooks in examples/: each passes the validator without a finding, and each runs end to end offline (the
scripted model works through its bash blocks) in a real sandbox, with jetty-agent and with the real agent CLIs,
and what it writes is right: the findings in the sample diff, the invoice's fields, the CSV's statistics."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import jsonschema
import pandas as pd
import plotly.io
import pytest
import yaml

from runs.gateway.scripted import runbook_blocks
from runs.runbooks import command_substitution_at, parse, validate
from trajectories.models import Run

from .conftest import use_backend
from .test_agent_clis import describe

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
JETTY = Path(sys.executable).parent / "jetty"
RUNBOOKS = sorted(EXAMPLES.glob("*/RUNBOOK.md"))
NAMES = [path.parent.name for path in RUNBOOKS]
SHELL_TOOLS = {
    "jetty-agent": "shell",
    "claude-code": "Bash",
    "codex": "exec_command",
    "gemini-cli": "run_shell_command",
}


def frontmatter(text: str) -> dict:
    return yaml.safe_load(text.split("---", 2)[1])


def test_there_are_the_three_examples_at_least():
    assert {"pr-review", "document-extraction", "csv-analysis"} <= set(NAMES)


@pytest.mark.parametrize("path", RUNBOOKS, ids=NAMES)
def test_each_example_passes_the_validator_without_errors_or_warnings(path):
    report = validate(path.read_text())
    assert report.findings == [], report.as_dict()


@pytest.mark.parametrize("path", RUNBOOKS, ids=NAMES)
def test_each_example_runs_offline_and_declares_what_it_uses(path):
    text = path.read_text()
    meta = frontmatter(text)
    assert meta["model"].startswith("scripted/") and meta["agent"] == "jetty-agent"
    assert meta["snapshot"] in ("general", "python", "browser") and meta["primary_outputs"]
    runbook, _ = parse(text)
    parameters = runbook.section("Parameters")
    assert parameters is not None
    declared = set(re.findall(r"^\| `(\w+)` \|", parameters.text, re.M))
    assert declared == runbook.variables() - {"results_dir"}
    outputs = runbook.section("REQUIRED OUTPUT FILES")
    assert outputs is not None and all(name in outputs.text for name in meta["primary_outputs"])
    assert len(runbook_blocks(text)) >= 5  # setup, work, evaluate, iterate, summary, report, checklist


@pytest.mark.parametrize("path", RUNBOOKS, ids=NAMES)
def test_each_example_folder_has_a_readme_and_a_sample_input(path):
    folder = path.parent
    readme = (folder / "README.md").read_text()
    assert f"jetty run examples/{folder.name}/RUNBOOK.md" in readme
    samples = [d for d in (folder / "examples").iterdir() if d.is_dir()]
    assert samples and all(any(d.iterdir()) for d in samples)
    for sample in samples:
        assert f"examples/{folder.name}/examples/{sample.name}/" in readme


@pytest.mark.parametrize("path", RUNBOOKS, ids=NAMES)
def test_every_bash_block_is_one_gemini_cli_runs(path):
    for number, block in enumerate(runbook_blocks(path.read_text()), start=1):
        found = command_substitution_at(block) is not None
        assert not found, f"block {number} of {path} looks like command substitution to Gemini CLI"


def test_the_python_in_the_runbooks_is_lint_clean(tmp_path):
    """The scripts the runbooks write (quoted heredocs) pass the project's ruff rules, placeholders filled in."""
    for path in RUNBOOKS:
        text = re.sub(r"{{\s*(\w+)\s*}}", r"\1", path.read_text())
        for number, script in enumerate(re.findall(r"<<'PY'\n(.*?)\nPY\n", text, re.S), start=1):
            (tmp_path / f"{path.parent.name.replace('-', '_')}_{number}.py").write_text(script + "\n")
    assert len(list(tmp_path.glob("*.py"))) >= 3 * len(RUNBOOKS)
    ruff = Path(sys.executable).parent / "ruff"
    config = ["--config", str(ROOT / "pyproject.toml")]
    lint = subprocess.run(
        [ruff, "check", *config, "--output-format", "concise", tmp_path], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout
    style = subprocess.run([ruff, "format", *config, "--check", tmp_path], capture_output=True, text=True)
    assert style.returncode == 0, style.stdout


# End to end: each example's sample through agent mode, checked against what the sample holds.


@dataclass(frozen=True)
class Case:
    example: str
    sample: str
    params: dict[str, str]
    backend: str = "bubblewrap"


CASES = {
    "pr-review": Case("pr-review", "billing-client/change.diff", {"diff_file": "change.diff"}),
    "document-extraction": Case("document-extraction", "northwind-invoice/invoice.txt", {"document": "invoice.txt"}),
    # The python snapshot (pandas and plotly) is a Docker image; bubblewrap sandboxes see the host's /usr.
    "csv-analysis": Case(
        "csv-analysis",
        "sales/sales.csv",
        {"csv_file": "sales.csv", "group_by": "region", "metric": "revenue"},
        "docker",
    ),
}


def run_example(client, jetty, token: str, case: Case, agent: str) -> Run:
    folder = EXAMPLES / case.example
    sample = folder / "examples" / case.sample
    headers = {"Authorization": f"Bearer {token}"}
    files = [("files", (sample.name, sample.read_bytes()))]
    keys = httpx.post(f"{jetty.url}/api/v1/sandbox/upload", files=files, headers=headers).json()["file_paths"]
    text = (folder / "RUNBOOK.md").read_text()
    meta = frontmatter(text)
    raw = client.chat.completions.with_raw_response.create(
        model=meta["model"],
        messages=[{"role": "system", "content": text}, {"role": "user", "content": "Follow the runbook."}],
        extra_body={
            "jetty": {
                "runbook": True,
                "task": case.example,
                "agent": agent,
                "snapshot": meta["snapshot"],
                "network": "off",
                "template_variables": case.params,
                "file_paths": keys,
            }
        },
        timeout=240,
    )
    summary = json.loads(raw.http_response.text)["jetty"]
    assert summary["status"] == "succeeded", describe(summary["run_id"])
    assert summary["validation"]["overall_passed"] is True, summary["validation"]
    assert set(meta["primary_outputs"]) <= set(summary["primary_files"])
    run = Run.objects.get(public_id=summary["run_id"])
    # Every bash block ran, through the agent's own shell tool, and none failed; then the scripted summary step.
    commands = list(run.events.filter(kind="command").order_by("seq"))
    assert len(commands) == len(runbook_blocks(text)) + 1, describe(run.public_id)
    failed = [c.payload for c in commands if c.payload.get("exit_code") != 0]
    assert failed == [], describe(run.public_id)
    tools = {e.payload["name"] for e in run.events.filter(kind="tool.call")}
    assert tools == {SHELL_TOOLS[agent]}
    return run


def read(run: Run, path: str) -> str:
    return run.artifacts.get(path=path).file.read().decode()


def artifact_json(run: Run, path: str):
    return json.loads(read(run, path))


FINDINGS = [  # file, line in the new version, severity, rule, what that line says
    ("billing/client.py", 9, "high", "hardcoded-secret", 'API_KEY = "sk_live_'),
    ("billing/client.py", 21, "high", "shell-true", "shell=True"),
    ("billing/reports.py", 8, "high", "sql-injection", 'db.execute(f"SELECT'),
    ("billing/reports.py", 14, "high", "eval-exec", "eval(rule"),
    ("billing/client.py", 12, "medium", "mutable-default", "expand=[]"),
    ("billing/client.py", 14, "medium", "no-timeout", "requests.get("),
    ("billing/client.py", 22, "medium", "bare-except", "except:"),
    ("billing/client.py", 23, "low", "debug-print", 'print("archive failed"'),
    ("billing/reports.py", 7, "low", "todo", "# TODO"),
]


def added_lines(diff: str) -> dict[tuple[str, int], str]:
    """(file, new line number) -> text of every added line of a unified diff."""
    lines: dict[tuple[str, int], str] = {}
    path, number = "", 0
    for line in diff.splitlines():
        if line.startswith("+++ "):
            path = line[4:].removeprefix("b/")
        elif line.startswith("@@"):
            number = int(re.search(r"\+(\d+)", line).group(1))
        elif line.startswith("+"):
            lines[(path, number)] = line[1:]
            number += 1
        elif line.startswith(" ") or line == "":
            number += 1
    return lines


def check_pr_review(run: Run) -> None:
    diff = (EXAMPLES / "pr-review/examples/billing-client/change.diff").read_text()
    added = added_lines(diff)
    assert all(marker in added[(file, line)] for file, line, _, _, marker in FINDINGS)
    findings = artifact_json(run, "findings.json")
    assert [(f["file"], f["line"], f["severity"], f["rule"]) for f in findings] == [x[:4] for x in FINDINGS]
    assert all(f["message"] and f["code"] in added[(f["file"], f["line"])].strip() for f in findings[1:])
    weights = {"high": 15, "medium": 6, "low": 2}
    score = max(0, 100 - sum(weights[f["severity"]] for f in findings))
    assert score == 18
    review = read(run, "review.md")
    assert f"Score: {score}/100 (request changes)" in review.splitlines()
    assert "## tests/test_reports.py" not in review and "- tests/test_reports.py" in review  # prints in tests are fine
    report = artifact_json(run, "validation_report.json")
    assert report["score"] == score and report["verdict"] == "request changes"
    assert report["findings"] == {"high": 4, "medium": 3, "low": 2, "total": 9}
    assert report["results"] == {"pass": 6, "partial": 0, "fail": 0} and report["iterations"] == 0
    assert report["parameters"] == {"diff_file": "change.diff"}
    assert {"findings.json", "review.md", "summary.md", "validation_report.json"} <= set(report["output_files"])
    assert "Must fix before merging" in read(run, "summary.md")
    for artifact in run.artifacts.all():  # the review quotes the line, not the credential
        assert b"sk_live_51HxQ2eZvKYlo2C0a9fTz8mQ" not in artifact.file.read()


INVOICE = {
    "invoice_number": "INV-20417",
    "invoice_date": "2024-03-05",
    "due_date": "2024-04-04",
    "purchase_order": "PO-7781",
    "currency": "EUR",
    "vendor": {"name": "NORTHWIND TRADERS LTD", "email": "billing@northwind.example"},
    "customer": {"name": "Contoso Analytics GmbH", "vat_id": "DE287654321"},
    "line_items": [
        {"description": "Data pipeline consulting (hours)", "quantity": 12, "unit_price": 150.0, "amount": 1800.0},
        {"description": "Dashboard licence, annual", "quantity": 1, "unit_price": 1200.0, "amount": 1200.0},
        {"description": "On-site workshop (days)", "quantity": 2, "unit_price": 475.5, "amount": 951.0},
    ],
    "subtotal": 3951.0,
    "tax_rate": 0.19,
    "tax": 750.69,
    "total": 4701.69,
}


def check_document_extraction(run: Run) -> None:
    schema = artifact_json(run, "schema.json")
    runbook = (EXAMPLES / "document-extraction/RUNBOOK.md").read_text()
    assert schema == json.loads(re.search(r"<<'JSON'\n(.*?)\nJSON\n", runbook, re.S).group(1))
    validator = jsonschema.Draft202012Validator(schema)
    extracted = artifact_json(run, "extracted.json")
    assert extracted == INVOICE
    assert all(type(item["quantity"]) is int for item in extracted["line_items"])
    validator.validate(extracted)
    # The first pass keeps what the document prints; the runbook's own checker saw the errors jsonschema sees.
    first = artifact_json(run, "first_pass.json")
    assert first["invoice_date"] == "March 5, 2024" and first["total"] == "€4,701.69" and first["currency"] == "€"
    expected_errors = sorted(error.json_path for error in validator.iter_errors(first))
    report = artifact_json(run, "validation_report.json")
    assert report["iterations"] == 1 and report["overall"] == "PASS" and report["schema_errors"] == []
    (fixes,) = report["rounds"]
    assert fixes["errors_before"] == len(expected_errors) == 16 and fixes["errors_after"] == 0
    assert sorted(change.split(":")[0] for change in fixes["fixed"]) == expected_errors and fixes["unfixed"] == []
    assert report["results"] == {"pass": 6, "partial": 0, "fail": 0}
    assert "Extracted invoice INV-20417" in read(run, "summary.md")


def check_csv_analysis(run: Run) -> None:
    frame = pd.read_csv(EXAMPLES / "csv-analysis/examples/sales/sales.csv")
    stats = artifact_json(run, "stats.json")
    revenue = frame["revenue"]
    assert stats["rows"] == len(frame) and stats["columns"] == list(frame.columns)
    expected = {
        "count": revenue.count(),
        "sum": revenue.sum(),
        "mean": revenue.mean(),
        "median": revenue.median(),
        "std": revenue.std(),
        "min": revenue.min(),
        "max": revenue.max(),
    }
    assert stats["metric_stats"] == pytest.approx({k: float(v) for k, v in expected.items()}, rel=1e-12)
    groups = frame.groupby("region")["revenue"].agg(["count", "sum", "mean"]).sort_values("sum", ascending=False)
    assert [g["group"] for g in stats["groups"]] == list(groups.index) == ["East", "North", "West", "South"]
    for got, (_, want) in zip(stats["groups"], groups.iterrows(), strict=True):
        assert got["count"] == want["count"]
        assert got["sum"] == pytest.approx(want["sum"]) and got["mean"] == pytest.approx(want["mean"])
        assert got["share"] == pytest.approx(want["sum"] / revenue.sum())

    figure = plotly.io.from_json(read(run, "chart.json"))  # validates the figure against plotly's schema
    (bar,) = figure.data
    assert bar.type == "bar" and list(bar.x) == list(groups.index)
    assert [float(y) for y in bar.y] == pytest.approx(list(groups["sum"]))
    assert "region" in figure.layout.title.text and figure.layout.xaxis.title.text == "region"
    page = read(run, "chart.html")
    assert "cdn.plot.ly" in page and "Plotly.newPlot" in page and '"East"' in page

    report = read(run, "report.md")
    for name, row in groups.iterrows():
        assert f"| {name} | {int(row['count'])} | {row['sum']:,.2f} |" in report
    validation = artifact_json(run, "validation_report.json")
    assert validation["top_group"] == "East" and validation["rows"] == len(frame)
    assert math.isclose(validation["metric_stats"]["sum"], revenue.sum())
    assert validation["results"] == {"pass": 5, "partial": 0, "fail": 0}
    assert "East leads with 32.0%" in read(run, "summary.md")


def readme_command(example: str) -> list[str]:
    """The `jetty run` command the example's README gives, as arguments."""
    readme = (EXAMPLES / example / "README.md").read_text()
    command = re.search(r"^```sh\n(jetty run .*?)\n(?!  )", readme, re.S | re.M).group(1)
    return shlex.split(command.replace("\\\n", " "))


def run_readme_command(jetty, token: str, example: str, home: Path) -> Run:
    """Run the README's command with the `jetty` console script, from the repository root, as a user would."""
    args = readme_command(example)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETTY_")}
    env |= {"HOME": str(home), "JETTY_URL": jetty.url, "JETTY_TOKEN": token}
    done = subprocess.run([str(JETTY), *args[1:]], env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    run_id = next(line.split(":")[0] for line in done.stdout.splitlines() if line.endswith(": succeeded"))
    run = Run.objects.get(public_id=run_id)
    meta = frontmatter((ROOT / args[2]).read_text())
    assert run.agent == meta["agent"] and run.snapshot == meta["snapshot"] and run.model == meta["model"]
    return run


CHECKS = {
    "pr-review": check_pr_review,
    "document-extraction": check_document_extraction,
    "csv-analysis": check_csv_analysis,
}
# Each example through the API with jetty-agent, through its README's `jetty run` command, and with one real CLI
# each; grouped by backend so the worker restarts once.
RUNS = [
    ("pr-review", "jetty-agent"),
    ("pr-review", "readme"),
    ("pr-review", "claude-code"),
    ("document-extraction", "jetty-agent"),
    ("document-extraction", "readme"),
    ("document-extraction", "codex"),
    ("csv-analysis", "jetty-agent"),
    ("csv-analysis", "readme"),
    ("csv-analysis", "gemini-cli"),
]


@pytest.mark.parametrize(("example", "agent"), RUNS, ids=[f"{e}-{a}" for e, a in RUNS])
def test_each_example_does_its_job_end_to_end(
    example, agent, alice, alice_client, jetty, worker_process, process_env, logs, tmp_path
):
    case = CASES[example]
    use_backend(worker_process, case.backend, process_env, logs)
    if agent == "readme":
        run = run_readme_command(jetty, alice.token, example, tmp_path)
    else:
        run = run_example(alice_client, jetty, alice.token, case, agent)
    CHECKS[example](run)
