"""Runbooks as contracts: the platform checks what the agent claims, whichever agent did the work.

Each of the four agents, in both sandbox backends, against the scripted model (which does a runbook's bash blocks
in order, the Final Checklist's included): a run that skips a required file, a run whose report lies, a run whose
checklist fails, and an honest run. Then the parts on their own: reading a runbook's terms, the report's shape,
and the verification script in a real sandbox (its user, no network, its time limit).
"""

from __future__ import annotations

import json
import os

import pytest

from runs import contract
from runs.sandboxes import SandboxSpec, create_sandbox
from runs.secrets import Masker
from trajectories.models import Run

from .test_agent_runs import final_run, start_async

AGENTS = ("jetty-agent", "claude-code", "codex", "gemini-cli")

REPORT = (
    '{"version": "1.0.0", "overall_passed": true, "output_files": ["/app/results/out.txt"], '
    '"stages": [{"name": "write", "passed": true, "message": "wrote out.txt"}], '
    '"results": {"pass": 1, "partial": 0, "fail": 0}}'
)


def runbook(*, outputs: str, steps: str, checklist: str) -> str:
    return f"""---
version: 1.0.0
evaluation: programmatic
---
# Objective
Write a greeting and prove it.

## REQUIRED OUTPUT FILES
| File | Description |
|------|-------------|
{outputs}
| `{{{{results_dir}}}}/summary.md` | what was done |
| `{{{{results_dir}}}}/validation_report.json` | the report |

## Step 1: work
```bash
{steps}
```

## Final Checklist (MANDATORY)

### Verification Script
```bash
{checklist}
```
"""


OUT = "| `{{results_dir}}/out.txt` | the greeting |"
WRITE = "mkdir -p /app/results && echo hello > /app/results/out.txt && " + (
    f"echo '{REPORT}' > /app/results/validation_report.json"
)
VERIFY = """for f in /app/results/out.txt /app/results/validation_report.json; do
  if [ -s "$f" ]; then echo "PASS: $f"; else echo "FAIL: $f is missing or empty"; fi
done"""

SCENARIOS = {
    "honest": runbook(outputs=OUT, steps=WRITE, checklist=VERIFY),
    # The runbook asks for chart.png; the agent never writes it, and the checklist's own FAIL line is ignored.
    "skips_a_file": runbook(
        outputs=OUT + "\n| `{{results_dir}}/chart.png` | the chart |",
        steps=WRITE,
        checklist=VERIFY + '\n[ -s /app/results/chart.png ] && echo "PASS: chart" || echo "FAIL: chart.png is missing"',
    ),
    # The report claims success and names an output file that does not exist.
    "report_lies": runbook(
        outputs=OUT,
        steps=WRITE.replace('"/app/results/out.txt"]', '"/app/results/out.txt", "/app/results/ghost.csv"]'),
        checklist=VERIFY,
    ),
    # Every file is there, but the content is wrong: the checklist's script exits non-zero.
    "checklist_fails": runbook(outputs=OUT, steps=WRITE, checklist=VERIFY + "\ngrep -q goodbye /app/results/out.txt"),
}


@pytest.mark.parametrize("agent", AGENTS)
def test_the_platform_not_the_agent_decides_whether_the_runbook_was_done(agent, alice_client, each_backend_worker):
    network = "off" if each_backend_worker.backend == "bubblewrap" else "on"
    started = {
        name: start_async(alice_client, text, agent=agent, network=network, template_variables={})
        for name, text in SCENARIOS.items()
    }
    runs = {name: final_run(run_id, timeout=240) for name, run_id in started.items()}
    failing = {name: {c["name"] for c in run.contract["checks"] if not c["passed"]} for name, run in runs.items()}

    honest = runs["honest"]
    assert honest.status == "succeeded", (honest.error, honest.contract)
    assert honest.contract["passed"] is True and honest.contract["mode"] == "enforce"
    assert [c["name"] for c in honest.contract["checks"] if c["applies"]] == [
        "required_files",
        "validation_report",
        "verification_script",
    ]
    assert "PASS: /app/results/out.txt" in honest.contract["checks"][2]["output"]

    for name in ("skips_a_file", "report_lies", "checklist_fails"):
        run = runs[name]
        assert run.status == "failed" and run.error_kind == "user" and run.error_code == "contract_failed", name
        assert run.contract["passed"] is False
    assert failing == {
        "honest": set(),
        "skips_a_file": {"required_files", "verification_script"},
        "report_lies": {"validation_report"},
        "checklist_fails": {"verification_script"},
    }
    assert "/app/results/chart.png is missing" in runs["skips_a_file"].error
    assert "ghost.csv" in runs["report_lies"].error
    assert "exited with code 1" in runs["checklist_fails"].error

    for run in runs.values():
        event = run.events.get(kind="contract.check")
        assert event.payload == run.contract
        assert event.seq < run.events.get(kind="run.state", payload__status=run.status).seq
        labels = {label.key: label.value for label in run.labels.filter(source="system", key__startswith="contract.")}
        assert labels["contract.passed"] is run.contract["passed"]
        assert {k: v for k, v in labels.items() if k != "contract.passed"} == {
            f"contract.{c['name']}": c["passed"] for c in run.contract["checks"] if c["applies"]
        }


def test_report_mode_keeps_the_status_about_execution_and_still_reports(alice_client, jetty, worker):
    raw = alice_client.chat.completions.with_raw_response.create(
        model="scripted/default",
        messages=[{"role": "system", "content": SCENARIOS["skips_a_file"]}, {"role": "user", "content": "go"}],
        extra_body={"jetty": {"runbook": True, "agent": "jetty-agent", "contract": "report"}},
        timeout=120,
    )
    summary = json.loads(raw.http_response.text)["jetty"]
    assert summary["status"] == "succeeded" and summary["error_code"] is None
    assert summary["contract"]["passed"] is False and summary["contract"]["mode"] == "report"
    run = Run.objects.get(public_id=summary["run_id"])
    assert run.labels.get(key="contract.passed").value is False


def test_a_bad_contract_mode_is_a_400_and_starts_nothing(alice_client, jetty):
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        alice_client.chat.completions.create(
            model="scripted/default",
            messages=[{"role": "system", "content": SCENARIOS["honest"]}, {"role": "user", "content": "go"}],
            extra_body={"jetty": {"runbook": True, "contract": "trust-the-agent"}},
        )
    assert caught.value.body["param"] == "jetty.contract"
    assert not Run.objects.exists()


def test_the_contract_reaches_the_stream_summary_and_the_run_record(alice, alice_client, jetty, worker):
    stream = alice_client.chat.completions.create(
        model="scripted/default",
        messages=[{"role": "system", "content": SCENARIOS["report_lies"]}, {"role": "user", "content": "go"}],
        extra_body={"jetty": {"runbook": True, "agent": "jetty-agent"}},
        stream=True,
        timeout=120,
    )
    chunks = [chunk.model_extra["jetty"] for chunk in stream]
    kinds = [c.get("event") for c in chunks]
    assert "contract.check" in kinds
    summary = chunks[-1]
    assert summary["event"] == "summary" and summary["status"] == "failed"
    assert summary["contract"]["passed"] is False and summary["error_code"] == "contract_failed"

    import urllib.request

    request = urllib.request.Request(
        f"{jetty.url}/api/v1/runs/{summary['run_id']}", headers={"Authorization": f"Bearer {alice.token}"}
    )
    record = json.loads(urllib.request.urlopen(request, timeout=10).read())
    assert record["contract"] == summary["contract"] and record["error_code"] == "contract_failed"


# The parts on their own.


def test_a_runbooks_terms_are_read_as_hosted_runbooks_write_them():
    text = """---
version: 1.0.0
evaluation: rubric
primary_outputs: [report.md, "{{results_dir}}/charts/*.png"]
---
# Objective
x

## REQUIRED OUTPUT FILES (MANDATORY)
| File | Description |
|------|-------------|
| `{{results_dir}}/filled_<basename>.xlsx` | the workbook |
| `/app/results/summary.md` | summary |
| `notes.md` | (optional) notes |
| `{{results_dir}}/` | the folder |
- `validation_report.json` — the report
- `data/out.csv`: the data

## Final Checklist (MANDATORY — do not skip)
Check it all.

### Verification Script
```bash
echo one
```

```python
print("not shell")
```

### Checklist
- [ ] done
```sh
echo two
```

## Tips
```bash
echo not part of the checklist
```
"""
    terms = contract.terms_of(text)
    assert terms.required == [
        "results/filled_*.xlsx",
        "results/summary.md",
        "results/validation_report.json",
        "results/data/out.csv",
        "results/report.md",
        "results/charts/*.png",
    ]
    assert terms.evaluation == "rubric"
    assert terms.script == "echo one\n\necho two"


def test_a_runbook_without_terms_gets_the_checks_that_apply_and_says_so():
    terms = contract.terms_of("---\nversion: 1.0.0\n---\n# Objective\nDo it.\n")
    assert terms.required == [] and terms.script is None
    check = contract.check_required(terms, {})
    assert check.passed and not check.applies and "no REQUIRED OUTPUT FILES section" in check.message
    check = contract.check_report(terms, {}, None)
    assert check.passed and not check.applies and "no validation report" in check.message


@pytest.mark.parametrize(
    ("report", "evaluation", "problem"),
    [
        ({"overall_passed": True, "stages": []}, None, "no `version`"),
        (
            {"version": "1", "overall_passed": True, "stages": [{"name": "a", "passed": "yes", "message": ""}]},
            None,
            "each stage needs",
        ),
        (
            {"version": "1", "overall_passed": "true", "stages": [{"name": "a", "passed": True, "message": ""}]},
            None,
            "`overall_passed` is not true or false",
        ),
        (
            {"version": "1", "overall_passed": True, "stages": [{"name": "a", "passed": True, "message": ""}]},
            "programmatic",
            "no `results` object",
        ),
        (
            {
                "version": "1",
                "overall_passed": True,
                "stages": [{"name": "a", "passed": True, "message": ""}],
                "rubric_scores": {"x": 4},
                "overall_score": "4",
            },
            "rubric",
            "no numeric `overall_score`",
        ),
        ({"error": "validation_report.json is not valid JSON: Expecting value"}, None, "is not valid JSON"),
        (["not", "an", "object"], None, "could not be read"),
    ],
)
def test_a_report_without_the_documented_shape_fails(report, evaluation, problem):
    assert any(problem in p for p in contract.report_problems(report, evaluation)), contract.report_problems(
        report, evaluation
    )


def test_a_report_with_the_documented_shape_passes():
    report = {
        "version": "1.0.0",
        "stages": [{"name": "a", "passed": True, "message": "ok"}],
        "overall_passed": True,
        "rubric_scores": {"clarity": 4},
        "overall_score": 4.0,
    }
    assert contract.report_problems(report, "rubric") == []


@pytest.fixture(params=["bubblewrap", "docker"])
def sandbox(request, settings):
    """A sandbox whose agent has ended, ready for the platform's script (Docker: its prepared container)."""
    settings.JETTY_CONTRACT_TIMEOUT_S = 3
    box = create_sandbox(SandboxSpec(name=f"contract-{os.getpid()}", network=False), backend=request.param)
    box.start(["true"]).wait()
    box.prepare_script()
    yield box
    box.destroy()


def script_check(sandbox, script: str, env: dict[str, str] | None = None, secret: str = "") -> contract.Check:
    terms = contract.Terms(script=script, has_checklist=True)
    return contract.check_script(terms, sandbox, env or {}, Masker({"TOKEN": secret} if secret else {}))


def test_the_verification_script_runs_as_the_sandbox_user_without_network(sandbox):
    check = script_check(
        sandbox,
        "id -u; cat /proc/net/dev | grep -c ':' ; (exec 3<>/dev/tcp/1.1.1.1/80) 2>/dev/null && echo FAIL: reached out\n"
        "test -w /app && echo writable",
    )
    lines = check.output.splitlines()
    assert check.passed, check
    assert lines[0] == str(sandbox.uid) and lines[0] != "0"
    assert lines[1] in ("1", "2")  # only the loopback interface (and Docker's unconnected tunnel device)
    assert lines[2] == "writable"


def test_fail_lines_exit_codes_and_endless_scripts_fail_the_check(sandbox):
    failed = script_check(sandbox, 'echo "PASS: a"; echo "❌ FAIL: b is wrong"; echo "  FAILED c"; echo FAILOVER ok')
    assert not failed.passed and "2 FAIL line(s): ❌ FAIL: b is wrong | FAILED c" in failed.message
    exited = script_check(sandbox, "echo all good; exit 7")
    assert not exited.passed and exited.message == "the verification script exited with code 7"
    loud = script_check(sandbox, "yes 'PASS: spam' | head -c 5000000")
    assert loud.passed and len(loud.output) <= contract.MAX_OUTPUT_CHARS
    endless = script_check(sandbox, "while true; do :; done")
    assert not endless.passed and "did not finish within 3 s" in endless.message


def test_the_scripts_output_keeps_no_secret(sandbox):
    check = script_check(
        sandbox, 'echo "token is $TOKEN"; echo "FAIL: $TOKEN"', {"TOKEN": "s3cr3t-value-1234"}, "s3cr3t-value-1234"
    )
    assert "s3cr3t-value-1234" not in check.output + check.message
    assert not check.passed


def broken_stored_runbook() -> str:
    """The stored-task runbook of the factories, asking for a chart it never draws (and needing no secret)."""
    from .factories import STORED_RUNBOOK

    text = STORED_RUNBOOK.replace(
        "secrets:\n  API_TOKEN: {env: SERVICE_TOKEN, description: the service token, required: true}\n", ""
    )
    text = text.replace('echo "region $REGION token {{secrets.API_TOKEN}}" && test -n "$SERVICE_TOKEN"', "true")
    return text.replace("- `/app/results/summary.md`", "- `/app/results/summary.md`\n- `/app/results/chart.png`")


def test_stored_task_runs_follow_the_same_rule(alice_api, worker):
    from .test_workflows import push

    assert push(alice_api, "contracts", "chart", runbook=broken_stored_runbook()).status_code == 201
    enforced = alice_api.post("/api/v1/run-sync/contracts/chart", {"init_params": {"name": "ada"}}, format="json")
    body = enforced.json()
    assert body["status"] == "failed" and body["error_code"] == "contract_failed", body
    assert "/app/results/chart.png is missing" in body["error"] and body["contract"]["passed"] is False
    reported = alice_api.post(
        "/api/v1/run-sync/contracts/chart", {"init_params": {"name": "ada"}, "contract": "report"}, format="json"
    )
    body = reported.json()
    assert body["status"] == "succeeded" and body["contract"]["passed"] is False, body
    refused = alice_api.post(
        "/api/v1/run/contracts/chart", {"init_params": {"name": "ada"}, "contract": "sometimes"}, format="json"
    )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "contract"


def test_the_run_page_shows_the_contract_and_its_event(alice):
    from django.test import Client

    from tests.factories import make_run
    from trajectories.actions import EventRecord, append_events

    verdict = {
        "passed": False,
        "mode": "enforce",
        "checks": [
            {"name": "required_files", "passed": False, "message": "/app/results/chart.png is missing",
             "applies": True},
            {"name": "validation_report", "passed": True, "message": "not applicable: none", "applies": False},
            {"name": "verification_script", "passed": False, "message": "exited with code 1", "applies": True,
             "output": "FAIL: <b>chart</b>"},
        ],
        "duration_ms": 12.0,
    }  # fmt: skip
    run = make_run(alice.org, task="charts", status="failed")
    Run.objects.filter(pk=run.pk).update(contract=verdict, error="broken", error_code="contract_failed")
    append_events(run.pk, [EventRecord(kind="contract.check", ts=2.0, payload=verdict)])
    client = Client()
    client.force_login(alice.owner)
    html = client.get(f"/runs/{run.public_id}/").content.decode()
    header = html[html.index('id="run-contract"') :]
    assert "broken" in header[:600] and "/app/results/chart.png is missing" in header
    assert "FAIL: &lt;b&gt;chart&lt;/b&gt;" in header and "<b>chart</b>" not in html  # escaped, as everything
    assert "<code>contract_failed</code>" in html
    assert "the platform checks the contract: broken" in html
    assert "✗ required_files: /app/results/chart.png is missing" in html


@pytest.mark.parametrize(
    ("named", "path"),
    [
        ("{{results_dir}}/transcripts/encounter_NN.md", "results/transcripts/encounter_*.md"),  # jettyio's own
        ("{{results_dir}}/{persona}.svg", "results/*.svg"),
        ("/app/results/FILLED_<basename>.xlsx", "results/FILLED_*.xlsx"),
        ("/app/output/report.md", "output/report.md"),  # elsewhere under /app
        ("/etc/passwd", None),  # outside /app: nothing the platform collects
        ("results/../../etc/passwd", None),
        ("{{results_dir}}/", None),  # the folder itself
        ("overall_passed", None),  # a word in backticks, not a file
    ],
)
def test_named_outputs_become_paths_under_app(named, path):
    assert contract.workspace_path(named) == path


def test_required_files_are_looked_for_without_following_links(tmp_path):
    (tmp_path / "results" / "charts").mkdir(parents=True)
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "report.md").write_text("# report")
    (tmp_path / "results" / "charts" / "a.png").write_bytes(b"png")
    (tmp_path / "results" / "empty.csv").write_text("")
    (tmp_path / "results" / "link.md").symlink_to(tmp_path / "output" / "report.md")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "input.md").write_text("not an output")
    present = contract.files_present(tmp_path)
    terms = contract.Terms(required=["output/report.md", "results/charts/*.png"])
    assert contract.check_required(terms, present).passed
    for wanted, problem in [
        ("results/empty.csv", "/app/results/empty.csv is empty"),
        ("results/link.md", "/app/results/link.md is missing"),  # a link is not the file
        ("assets/input.md", "/app/assets/input.md is missing"),  # inputs are no outputs
        ("results/charts/*.svg", "/app/results/charts/*.svg is missing"),
    ]:
        check = contract.check_required(contract.Terms(required=[wanted]), present)
        assert not check.passed and check.message == problem


# What the outside check found, each kept found.


def test_a_long_check_keeps_the_claim_the_sweeper_takes_nothing_over(alice_client, jetty, worker):
    """The heartbeat beats through collecting and checking: a check longer than the stall window (6 s in tests)
    is not taken for a dead worker, and the run ends once, on its verdict."""
    from runs.models import Job
    from runs.tasks import sweep_runs

    slow = runbook(outputs=OUT, steps=WRITE, checklist=VERIFY + "\nsleep 9")
    run_id = start_async(alice_client, slow, agent="jetty-agent", network="off", template_variables={})
    while Run.objects.get(public_id=run_id).status not in ("succeeded", "failed"):
        sweep_runs()  # as beat would, every moment of the run
        import time

        time.sleep(0.5)
    run = final_run(run_id)
    assert run.status == "succeeded", run.error
    assert Job.objects.get(run=run).attempts == 1
    assert run.events.filter(kind="run.state", payload__status__in=["succeeded", "failed"]).count() == 1


def test_fail_lines_are_counted_not_hoarded_and_secrets_stay_masked_however_printed(sandbox):
    many = script_check(sandbox, "yes 'FAIL: again' | head -n 200000")
    assert not many.passed and "printed 200000 FAIL line(s)" in many.message
    secret = "sk-live-TRAILING-NL-0123456789\n"
    leaked = script_check(sandbox, 'echo "FAIL: the key $API_KEY was refused"', {"API_KEY": secret}, "")
    assert "sk-live-TRAILING" in leaked.message  # without a Masker it is printed: the next line proves the mask
    masked = contract.check_script(
        contract.Terms(script='echo "FAIL: the key $API_KEY was refused  "', has_checklist=True),
        sandbox,
        {"API_KEY": secret},
        Masker({"API_KEY": secret}),
    )
    assert "sk-live-TRAILING" not in masked.message + (masked.output or "")
    assert "[secret:API_KEY]" in masked.message


@pytest.mark.parametrize(
    ("script", "passes", "said"),
    [
        ('echo "FAILED: 0"; echo "↳ FAILED tests: 0"; echo "FAILURES = 0"', True, "passed"),
        ("printf '\\033[31mFAIL\\033[0m chart missing\\n'", False, "FAIL chart missing"),
        ("python3 -c 'assert 1 == 2'; echo '=== VERIFICATION COMPLETE ==='", False, "broke without saying FAIL"),
        ("no-such-tool --check; echo done", False, "no-such-tool: command not found"),
    ],
)
def test_failures_are_read_as_scripts_print_them(sandbox, script, passes, said):
    check = script_check(sandbox, script)
    assert check.passed is passes and said in check.message, check


def test_an_oversized_script_is_a_verdict_not_a_crash(sandbox):
    check = script_check(sandbox, "echo hi\n" * 20_000)
    assert not check.passed and "over 100000 bytes" in check.message


def test_a_deeply_nested_report_is_refused_with_a_reason():
    from runs.execution import parse_validation_report

    deep = b'{"a": ' * 500 + b"1" + b"}" * 500
    assert parse_validation_report(deep) == {"error": "validation_report.json nests deeper than 64 levels"}


def test_tables_lists_and_sections_are_read_as_people_write_them():
    text = """---
version: 1.0.0
---
## Required outputs overview
Everything below.

## REQUIRED OUTPUT FILES
| # | File | Notes |
|---|------|-------|
| 1 | `{{results_dir}}/report.md` | the report, non-optional |
| 2 | `app/results/data.csv` | plain |
| 3 | `errors.log` | optional |
| 4 | `Final Report.docx` | with a space |
- `e.g.` and `python3.11` are no files
- `notes.md`, if any

## Notes before the Final Checklist
```bash
echo not this
```

## Final Checklist
~~~bash
echo tilde
~~~
```bash title="verify.sh"
echo titled
```
"""
    terms = contract.terms_of(text)
    assert terms.required == ["results/report.md", "results/data.csv", "results/Final Report.docx"]
    assert terms.script == "echo tilde\n\necho titled"


def test_a_report_that_contradicts_itself_or_names_patterns_fails():
    stages = [{"name": "a", "passed": True, "message": ""}, {"name": "b", "passed": False, "message": "x"}]
    report = {"version": "1", "overall_passed": True, "stages": stages, "output_files": "results.csv"}
    present = {"results/validation_report.json": 10, "results/results.csv": 3}
    terms = contract.Terms(required=["results/validation_report.json"])
    check = contract.check_report(terms, present, report)
    assert not check.passed and "its stage(s) b failed" in check.message
    report = {**report, "stages": stages[:1], "output_files": ["*"]}
    check = contract.check_report(terms, present, report)
    assert not check.passed and "'*' does not exist" in check.message
