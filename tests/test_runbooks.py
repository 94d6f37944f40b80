"""The runbook validator: what makes a runbook unusable (errors) and what makes its runs hard to judge (warnings)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from runs.runbooks import command_substitution_at, validate

GOOD = """---
version: 1.2.0
evaluation: programmatic
primary_outputs: [count.txt]
secrets:
  API_TOKEN: {env: API_TOKEN, description: the service token, required: true}
---
# Objective
Count the words of a greeting for {{name}}.

## REQUIRED OUTPUT FILES
- `{{results_dir}}/count.txt`
- `/app/results/summary.md`
- `/app/results/validation_report.json`

## Parameters
- `name`: who to greet

## Dependencies
- coreutils

## Step 1: environment setup
```bash
mkdir -p /app/results && echo "token set: ${API_TOKEN:+yes} {{secrets.API_TOKEN}}" > /dev/null
```

## Step 2: count
```bash
# A heading inside a code block is not a section:
# Final Checklist
echo "hello {{name}}" | wc -w > /app/results/count.txt
```

## Evaluate
| result | when |
|---|---|
| PASS | count.txt holds 2 |

## Iterate (max 3 rounds)
| symptom | fix |
|---|---|
| empty count | rerun step 2 |

## Summary
Write summary.md.

## Validation report
Write validation_report.json.

## Final Checklist
```bash
test -s /app/results/count.txt && test -s /app/results/validation_report.json
```

## Tips
Keep it short.
"""


def codes(text: str) -> tuple[list[str], list[str]]:
    report = validate(text)
    return [f.code for f in report.errors], [f.code for f in report.warnings]


def test_a_complete_runbook_is_valid_with_no_warnings():
    report = validate(GOOD)
    assert report.valid and report.findings == []


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda t: t.split("---\n", 2)[2], "frontmatter_missing"),
        (lambda t: t.replace("version: 1.2.0\n", ""), "version_missing"),
        (lambda t: t.replace("version: 1.2.0", "version: one"), "version_invalid"),
        (lambda t: t.replace("evaluation: programmatic\n", ""), "evaluation_missing"),
        (lambda t: t.replace("evaluation: programmatic", "evaluation: vibes"), "evaluation_unknown"),
        (lambda t: t.replace("# Objective", "# Goal"), "objective_missing"),
        (lambda t: t.replace("## REQUIRED OUTPUT FILES", "## Outputs"), "required_outputs_missing"),
        (lambda t: t.replace("- `/app/results/validation_report.json`\n", ""), "validation_report_missing"),
        (lambda t: t.replace("## Evaluate", "## Check"), "evaluation_step_missing"),
        (lambda t: t.replace("## Iterate (max 3 rounds)", "## Iterate"), "iteration_unbounded"),
        (lambda t: t.replace("## Iterate (max 3 rounds)", "## Again"), "iteration_missing"),
        (lambda t: t.replace("## Final Checklist", "## Done"), "final_checklist_missing"),
        (
            lambda t: t.rsplit("## Final Checklist", 1)[0] + "## Final Checklist\n- [ ] all good\n",
            "verification_script_missing",
        ),
        (lambda t: t.replace("## Parameters", "## Inputs"), "parameters_missing"),
        (
            lambda t: t.replace(
                "  API_TOKEN: {env: API_TOKEN, description: the service token, required: true}\n", "  OTHER: {}\n"
            ),
            "secret_undeclared",
        ),
        (lambda t: t.replace("---\nversion", "---\n: [\nversion"), "frontmatter_invalid"),
    ],
)
def test_each_error_is_reported(change, error):
    errors, _warnings = codes(change(GOOD))
    assert error in errors


@pytest.mark.parametrize(
    ("change", "warning"),
    [
        (lambda t: t.replace("- `/app/results/summary.md`\n", ""), "summary_missing"),
        (lambda t: t.replace("primary_outputs: [count.txt]\n", ""), "primary_outputs_missing"),
        (lambda t: t.replace("## Dependencies", "## Needs"), "dependencies_missing"),
        (lambda t: t.replace("## Tips", "## Notes"), "tips_missing"),
        (lambda t: t.replace("Keep it short.", "{TODO: write tips}"), "todo_left"),
    ],
)
def test_each_warning_is_reported_and_leaves_the_runbook_valid(change, warning):
    errors, warnings = codes(change(GOOD))
    assert errors == [] and warnings == [warning]


def test_findings_carry_their_line():
    report = validate(GOOD.replace("## Iterate (max 3 rounds)", "## Iterate"))
    (finding,) = report.errors
    assert GOOD.splitlines()[finding.line - 1] == "## Iterate (max 3 rounds)"


def test_a_runbook_for_gemini_cli_is_warned_of_each_command_it_would_refuse():
    text = GOOD.replace("evaluation: programmatic\n", "evaluation: programmatic\nagent: gemini-cli\n").replace(
        'echo "hello {{name}}" | wc -w > /app/results/count.txt',
        'echo "hello {{name}}" | wc -w > /app/results/count.txt\nlines="$(wc -l < /app/results/count.txt)"',
    )
    text += "\n```sh\ncd /app &&\n  echo `date` > /tmp/when\n```\n\n```python\nprint(f'{(1)}')\n```\n"
    report = validate(text)
    assert report.valid
    found = [(f.code, text.splitlines()[f.line - 1]) for f in report.warnings]
    assert found == [
        ("gemini_command_substitution", 'lines="$(wc -l < /app/results/count.txt)"'),
        ("gemini_command_substitution", "  echo `date` > /tmp/when"),
    ]
    assert "Blocked: command substitution detected" in report.warnings[0].message


def test_only_a_runbook_for_gemini_cli_is_warned_of_command_substitution():
    text = GOOD.replace("wc -w > /app/results/count.txt", "wc -w > /app/results/$(echo count).txt")
    assert validate(text).findings == []
    gemini = text.replace("evaluation: programmatic\n", "evaluation: programmatic\nagent: gemini-cli\n")
    assert [f.code for f in validate(gemini).findings] == ["gemini_command_substitution"]
    assert validate(gemini.replace("agent: gemini-cli", "agent: codex")).findings == []


@pytest.mark.parametrize(
    ("command", "at"),
    [
        ("echo $(date)", 5),
        ("echo `date`", 5),
        ("diff <(ls) x", 5),
        ("echo $((1 + 2))", 5),
        ('echo "now: $(date)"', 11),
        ("echo '$(date)'", None),
        ("echo \\$(date)", None),
        ('echo "a" > f', None),
        ("x=${y}", None),
        ('echo "<(not a process)"', None),
    ],
)
def test_the_command_substitution_check_is_gemini_cli_s_own(command, at):
    """A port of Gemini CLI 0.61's detectBashSubstitution: the quoting it understands, and no more."""
    assert command_substitution_at(command) == at


def test_the_api_validates_for_any_token_holder(alice, jetty):
    def post(body: dict, token: str | None = alice.token):
        headers = {"content-type": "application/json"} | ({"authorization": f"Bearer {token}"} if token else {})
        request = urllib.request.Request(f"{jetty.url}/api/v1/runbooks/validate", json.dumps(body).encode(), headers)
        return urllib.request.urlopen(request)

    with post({"runbook": GOOD.replace("evaluation: programmatic", "evaluation: vibes")}) as response:
        answer = json.loads(response.read())
    assert answer["valid"] is False and [e["code"] for e in answer["errors"]] == ["evaluation_unknown"]
    for body, token, status in (({"runbook": ""}, alice.token, 400), ({"runbook": GOOD}, None, 401)):
        with pytest.raises(urllib.error.HTTPError) as caught:
            post(body, token)
        assert caught.value.code == status
        assert "error" in json.loads(caught.value.read())


@pytest.mark.parametrize(
    "limits, valid",
    [
        ("{memory_mb: 512, pids: 64, cpus: 0.5, disk_mb: 100}", True),
        ("{gpus: 1}", False),
        ("{memory_mb: -1}", False),
        ("{pids: lots}", False),
        ("[512]", False),
    ],
)
def test_the_validator_checks_a_runbooks_limits(limits, valid):
    text = GOOD.replace("evaluation: programmatic", f"evaluation: programmatic\nlimits: {limits}", 1)
    codes = {finding.code for finding in validate(text).findings if finding.level == "error"}
    assert ("limits_invalid" not in codes) is valid, codes


def test_limits_are_bounded_by_the_server(settings):
    from runs.limits import check_limits, sandbox_limits

    settings.JETTY_SANDBOX_MAX_LIMITS = {"cpus": 2.0, "memory_mb": 4096, "pids": 1024, "disk_mb": 8192}
    settings.JETTY_SANDBOX_LIMITS = {"cpus": 1.0, "memory_mb": 2048, "pids": 512, "disk_mb": 4096}
    assert check_limits({"memory_mb": 4096, "cpus": 1.5}) == {"memory_mb": 4096, "cpus": 1.5}
    with pytest.raises(ValueError, match="from 64 to 4096"):
        check_limits({"memory_mb": 4097})
    with pytest.raises(ValueError, match="an integer"):
        check_limits({"pids": True})
    limits = sandbox_limits({"pids": 64}, wall_s=30)
    assert (limits.pids, limits.memory_mb, limits.cpus, limits.disk_mb, limits.wall_s) == (64, 2048, 1.0, 4096, 30)


def test_a_stored_runbooks_limits_reach_its_run_and_the_caller_may_override_them(settings):
    from orgs.api_errors import ApiError
    from runs.stored import runbook_request

    text = GOOD.replace("evaluation: programmatic", "evaluation: programmatic\nlimits: {pids: 64, memory_mb: 256}", 1)

    def request(**overrides):
        return runbook_request(
            text,
            {"name": "x"},
            task="t",
            collection_id=None,
            secrets={"API_TOKEN": "t0ken"},
            env={},
            overrides=overrides,
        )

    assert request().limits == {"pids": 64, "memory_mb": 256}
    assert request(limits={"memory_mb": 512}).limits == {"pids": 64, "memory_mb": 512}
    settings.JETTY_SANDBOX_MAX_LIMITS = {**settings.JETTY_SANDBOX_MAX_LIMITS, "pids": 32}
    with pytest.raises(ApiError) as refused:
        request()
    assert refused.value.status == 400 and "pids" in str(refused.value)


def test_a_runbook_of_megabytes_is_read_in_one_pass():
    """Sections were built by adding line to line: a 4 MB section took 51 s and held the web process (the outside
    check). Read in one pass, this returns at once; were it quadratic again, this test would take minutes."""
    from runs.runbooks import parse

    text = "---\nversion: 1.0.0\n---\n## Steps\n" + "a line of the runbook that goes on\n" * 120_000
    runbook, _ = parse(text)
    assert len(runbook.sections) == 1 and runbook.sections[0].text.count("\n") == 120_000
    assert validate(text).errors
