"""Runbooks as contracts: the platform, not the agent, decides whether a run did what its runbook requires.

When the agent's process has ended, before its sandbox is destroyed, three checks:

1. ``required_files``: every file the REQUIRED OUTPUT FILES section lists (and the frontmatter's
   ``primary_outputs``) is under /app/results and not empty;
2. ``validation_report``: ``validation_report.json`` parses, has the documented shape, each of its ``output_files``
   exists, and ``overall_passed`` is true;
3. ``verification_script``: the Final Checklist's shell block (subsections included) is run again, inside the
   sandbox as its user, without network and with a time limit: a non-zero exit or any ``FAIL`` line fails it.

Files are looked at from the host through ``hostile`` (the same tree the sandbox sees, without letting anything
in the sandbox answer for itself); the script runs inside, because it is the runbook's own code. A check that
does not apply (no such section, no such file named) is listed as not applying, and passes.

The verdict is ``{"passed", "mode", "checks": [{"name", "passed", "message", "applies", "output"?}],
"duration_ms"}``. Under ``enforce`` (the default) a run whose contract failed ends ``failed`` with code
``contract_failed``; ``report`` only reports it.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from trajectories.actions import EventRecord, append_events, record_label
from trajectories.models import LabelSource, Run

from .agents import sanitise
from .runbooks import parse
from .sandboxes import Sandbox, hostile

ENFORCE, REPORT = "enforce", "report"
MODES = (ENFORCE, REPORT)
FAILED_CODE = "contract_failed"

REPORT_NAME = "validation_report.json"
CODE_SPAN = re.compile(r"`([^`\n]+)`")
SHELL_FENCE = re.compile(r"^\s*(```+|~~~+)\s*\{?\.?(bash|sh|shell|zsh)\b[^`]*$", re.I)
FENCE_END = re.compile(r"^\s*(```+|~~~+)\s*$")
FAIL_LINE = re.compile(r"^\W*FAIL(?:ED|URES?)?\b")
ZERO_FAILURES = re.compile(r"^\W*FAIL(?:ED|URES?)?(?:\s+\w+)?\s*[:=]\s*0+\s*$")  # "FAILED: 0" is a count
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# What a script prints when a check in it broke without saying FAIL: an uncaught Python exception, a missing tool.
BROKE = re.compile(r"^Traceback \(most recent call last\):|: command not found$")
MAX_FAIL_LINES = 20  # kept to be named; all are counted
MAX_SCRIPT_BYTES = 100_000  # a verification script longer than this is refused (it goes to the shell as one argument)
FILE_NAME = re.compile(r"\.[A-Za-z][A-Za-z0-9_]{0,9}$|\*")  # ends in an extension, or is a pattern
OPTIONAL = re.compile(r"(?<![\w-])optional\b|\(optional|if (?:any|present|needed|applicable)\b", re.I)
# Stand-ins for names the agent chooses: `<basename>`, `{{name}}`, `{persona}`, `encounter_NN`, `page-X`.
PLACEHOLDER = re.compile(r"<[^<>/]+>|\{\{[^}]*\}\}|\{[^{}/]*\}|(?<=[_\-.])(?:N+|X+|#+)(?=[_\-.])")
MAX_OUTPUT_CHARS = 16_000
MAX_FILES = 200  # named files checked at most


@dataclass
class Terms:
    """What a runbook asks for, read from its text."""

    required: list[str] = field(default_factory=list)  # paths under /app (globs allowed)
    evaluation: str | None = None
    has_outputs_section: bool = False
    script: str | None = None
    has_checklist: bool = False


def terms_of(runbook: str) -> Terms:
    book, _ = parse(runbook)
    meta = book.frontmatter or {}
    terms = Terms(evaluation=meta.get("evaluation") if isinstance(meta.get("evaluation"), str) else None)
    outputs = book.part("REQUIRED OUTPUT FILES")
    outputs = book.part("Required outputs") if outputs is None else outputs
    if outputs is not None:
        terms.has_outputs_section = True
        terms.required += named_files(outputs)
    primary = meta.get("primary_outputs")
    for name in [primary] if isinstance(primary, str) else primary if isinstance(primary, list) else []:
        if isinstance(name, str) and (path := workspace_path(name)):
            terms.required.append(path)
    terms.required = list(dict.fromkeys(terms.required))[:MAX_FILES]
    checklist = book.part("Final Checklist")
    if checklist is not None:
        terms.has_checklist = True
        terms.script = shell_blocks(checklist)
    return terms


def named_files(section: str) -> list[str]:
    """The files a REQUIRED OUTPUT FILES section names: in a table, the code span of the column headed File, Path,
    Output or Name (else the row's first code span); in a list, the item's first code span. A row or item that says
    the file is optional is left out."""
    found = []
    column: int | None = None
    for line in section.splitlines():
        stripped = line.strip()
        if re.fullmatch(r"\|?[\s:|-]+\|?", stripped) and "-" in stripped:
            continue  # a table's separator row
        row = stripped.startswith("|") or (stripped.count("|") >= 2 and not stripped.startswith(("-", "*", "+")))
        item = re.match(r"^([-*+]|\d+[.)])\s", stripped)
        if not (row or item):
            column = None
            continue
        if OPTIONAL.search(stripped):
            continue
        cells = [c.strip() for c in stripped.strip("|").split("|")] if row else [stripped]
        if row and column is None and not CODE_SPAN.search(stripped):
            headed = [i for i, c in enumerate(cells) if re.search(r"\b(file|path|output|name)", c, re.I)]
            column = headed[0] if headed else None
            continue
        chosen = cells[column] if row and column is not None and column < len(cells) else None
        span = CODE_SPAN.search(chosen) if chosen is not None else None
        span = span or next((m for c in cells if (m := CODE_SPAN.search(c))), None)
        if span and (path := workspace_path(span.group(1))):
            found.append(path)
    return found


def workspace_path(name: str) -> str | None:
    """A named output as a path under /app (``results/x``), placeholders as wildcards; None if it names no file."""
    name = name.strip()
    if not name or "\n" in name or name.endswith("/"):
        return None
    for prefix in ("/app/results/", "app/results/", "{{results_dir}}/", "$RESULTS_DIR/", "${RESULTS_DIR}/"):
        if name.startswith(prefix):
            name = "results/" + name[len(prefix) :]
            break
    else:
        if name.startswith("/app/"):
            name = name[len("/app/") :]
        elif name.startswith("/"):
            return None  # outside /app: nothing the platform collects
        else:
            name = name.removeprefix("./")
            name = name if name.startswith("results/") else f"results/{name}"
    name = PLACEHOLDER.sub("*", name)
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts) or not FILE_NAME.search(parts[-1]):
        return None  # a folder, or words in backticks (`e.g.`, `python3.11`) rather than a file name
    return name


def shell_blocks(section: str) -> str | None:
    """The section's fenced shell blocks (```bash, sh, shell, zsh), joined in order; None if it has none."""
    blocks: list[str] = []
    current: list[str] | None = None
    for line in section.splitlines():
        if current is None:
            if SHELL_FENCE.match(line):
                current = []
        elif FENCE_END.match(line):
            blocks.append("\n".join(current))
            current = None
        else:
            current.append(line)
    script = "\n\n".join(b for b in blocks if b.strip())
    return script or None


@dataclass
class Check:
    name: str
    passed: bool
    message: str
    applies: bool = True
    output: str | None = None

    def as_dict(self) -> dict[str, Any]:
        found = {"name": self.name, "passed": self.passed, "message": self.message, "applies": self.applies}
        return found if self.output is None else {**found, "output": self.output}


def files_present(workspace: Path) -> dict[str, int]:
    """Size of every regular file under /app but its inputs, keyed by its path there (``results/x.csv``); links,
    hard links and the like do not count."""
    return {entry.path: entry.size for entry in hostile.walk(workspace, exclude=("assets",)) if entry.refused is None}


def matches(pattern: str, present: dict[str, int]) -> list[tuple[str, int]]:
    if any(c in pattern for c in "*?["):
        return [(path, size) for path, size in present.items() if fnmatch.fnmatchcase(path, pattern)]
    return [(pattern, present[pattern])] if pattern in present else []


def check_required(terms: Terms, present: dict[str, int]) -> Check:
    if not terms.required:
        why = "the runbook names no required output files" + (
            "" if terms.has_outputs_section else " (it has no REQUIRED OUTPUT FILES section)"
        )
        return Check("required_files", True, f"not applicable: {why}", applies=False)
    missing, empty = [], []
    for pattern in terms.required:
        found = matches(pattern, present)
        if not found:
            missing.append(f"/app/{pattern}")
        elif not any(size > 0 for _, size in found):
            empty.append(f"/app/{pattern}")
    problems = [f"{p} is missing" for p in missing] + [f"{p} is empty" for p in empty]
    if problems:
        return Check("required_files", False, "; ".join(problems[:10]) + (" …" if len(problems) > 10 else ""))
    return Check("required_files", True, f"all {len(terms.required)} required files exist and are not empty")


def check_report(terms: Terms, present: dict[str, int], report: Any) -> Check:
    listed = any(p.endswith(REPORT_NAME) for p in terms.required)
    if f"results/{REPORT_NAME}" not in present:
        if listed:
            return Check("validation_report", False, f"/app/results/{REPORT_NAME} is missing")
        return Check("validation_report", True, "not applicable: the runbook asks for no validation report", False)
    problems = report_problems(report, terms.evaluation)
    if not problems:
        for name in output_files(report):
            path = workspace_path(name)
            if path is None or path not in present:  # each a file of its own: a report names no patterns
                problems.append(f"its output file {name!r} does not exist")
    if not problems and report.get("overall_passed") is not True:
        problems.append("it says overall_passed is false")
    if not problems:
        failed = [s["name"] for s in report["stages"] if s["passed"] is False]
        if failed:
            problems.append(f"it says overall_passed is true, but its stage(s) {', '.join(failed[:5])} failed")
    if problems:
        said = "; ".join(problems[:5])
        return Check("validation_report", False, said if said.startswith(REPORT_NAME) else f"{REPORT_NAME}: {said}")
    return Check("validation_report", True, f"{REPORT_NAME} has the documented shape and says it passed")


def report_problems(report: Any, evaluation: str | None) -> list[str]:
    """What is wrong with the report's shape (empty when nothing is)."""
    if not isinstance(report, dict):
        return ["it could not be read"]
    if "error" in report and len(report) == 1:
        return [str(report["error"])]  # why it could not be read, as collecting it said: "validation_report.json …"
    problems = []
    if "version" not in report:
        problems.append("no `version`")
    stages = report.get("stages")
    if not isinstance(stages, list) or not stages:
        problems.append("`stages` is not a non-empty list")
    elif not all(
        isinstance(s, dict)
        and isinstance(s.get("name"), str)
        and isinstance(s.get("passed"), bool)
        and isinstance(s.get("message"), str)
        for s in stages
    ):
        problems.append("each stage needs `name` (text), `passed` (true/false) and `message` (text)")
    if not isinstance(report.get("overall_passed"), bool):
        problems.append("`overall_passed` is not true or false")
    if evaluation == "programmatic" and not isinstance(report.get("results"), dict):
        problems.append("no `results` object (a programmatic runbook's PASS/PARTIAL/FAIL counts)")
    if evaluation == "rubric":
        if not isinstance(report.get("rubric_scores"), dict):
            problems.append("no `rubric_scores` object (a rubric runbook's scores)")
        score = report.get("overall_score")
        if not isinstance(score, int | float) or isinstance(score, bool):
            problems.append("no numeric `overall_score`")
    return problems


def output_files(report: dict[str, Any]) -> list[str]:
    files = report.get("output_files")
    files = [files] if isinstance(files, str) else files
    names = []
    for entry in files if isinstance(files, list) else []:
        if isinstance(entry, dict):
            entry = entry.get("path") or entry.get("file") or entry.get("name")
        if isinstance(entry, str) and entry.strip():
            names.append(entry.strip())
    return names[:MAX_FILES]


def check_script(terms: Terms, sandbox: Sandbox, env: dict[str, str], mask: Callable[[str], str]) -> Check:
    if terms.script is None:
        why = "the runbook has no Final Checklist"
        if terms.has_checklist:
            why = "the Final Checklist has no ```bash block"
        return Check("verification_script", True, f"not applicable: {why}", applies=False)
    if len(terms.script.encode()) > MAX_SCRIPT_BYTES:
        message = f"the verification script is over {MAX_SCRIPT_BYTES} bytes: the platform runs shorter ones only"
        return Check("verification_script", False, message)
    timeout = settings.JETTY_CONTRACT_TIMEOUT_S
    execution = sandbox.start_script(terms.script, env, timeout_s=timeout)
    kept: list[str] = []
    size, failures = 0, 0
    failing: list[str] = []
    broke: list[str] = []
    for line in execution.lines():
        plain = ANSI.sub("", line)
        if FAIL_LINE.match(plain) and not ZERO_FAILURES.match(plain):
            failures += 1
            if len(failing) < MAX_FAIL_LINES:
                failing.append(mask(plain).strip()[:300])
        elif BROKE.search(plain.rstrip()) and len(broke) < MAX_FAIL_LINES:
            broke.append(mask(plain).strip()[:300])
        if size < MAX_OUTPUT_CHARS:
            kept.append(line)
            size += len(line) + 1
    outcome = execution.wait()
    output = sanitise(mask("\n".join(kept)))[:MAX_OUTPUT_CHARS]
    if outcome.timed_out:
        message = f"the verification script did not finish within {timeout} s (JETTY_CONTRACT_TIMEOUT_S)"
    elif outcome.user_error:
        message = f"the verification script was stopped: {outcome.user_error}"
    elif failing:
        message = f"the verification script printed {failures} FAIL line(s): " + " | ".join(failing[:3])
    elif outcome.exit_code != 0:
        message = f"the verification script exited with code {outcome.exit_code}"
    elif broke:
        message = "a step of the verification script broke without saying FAIL: " + " | ".join(broke[:3])
    else:
        return Check("verification_script", True, "the verification script passed", output=output)
    return Check("verification_script", False, sanitise(message[:2000]), output=output)


def check_contract(
    runbook: str,
    workspace: Path,
    report: Any,
    sandbox: Sandbox,
    env: dict[str, str],
    mode: str,
    mask: Callable[[str], str],
) -> dict[str, Any]:
    """The run's contract verdict; ``report`` is the validation report as collected (None if there was none)."""
    started = time.monotonic()
    terms = terms_of(runbook)
    present = files_present(workspace)
    checks = [check_required(terms, present), check_report(terms, present, report)]
    checks.append(check_script(terms, sandbox, env, mask))
    return {
        "passed": all(c.passed for c in checks),
        "mode": mode,
        "checks": [c.as_dict() for c in checks],
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
    }


def record_contract(run: Run, contract: dict[str, Any]) -> None:
    """The verdict on the run's record, as a ``contract.check`` event, and as the system's labels."""
    Run.objects.filter(pk=run.pk).update(contract=contract)
    append_events(run.pk, [EventRecord(kind="contract.check", ts=time.time(), payload=contract)])
    record_label(run, "contract.passed", contract["passed"], source=LabelSource.SYSTEM, author="system")
    for check in contract["checks"]:
        if check["applies"]:
            record_label(run, f"contract.{check['name']}", check["passed"], source=LabelSource.SYSTEM, author="system")


def failure_message(contract: dict[str, Any]) -> str:
    """What a failed contract says as the run's error: its first failing checks."""
    failing = [f"{c['name']}: {c['message']}" for c in contract["checks"] if not c["passed"]]
    return "the run did not meet its runbook's contract: " + "; ".join(failing[:2])


def parse_mode(value: Any, runbook: str = "") -> str | None:
    """The run's mode: the caller's ``contract`` value, else the runbook's frontmatter ``contract``, else enforce;
    None when the value given is not a mode."""
    if value is None:
        meta = parse(runbook)[0].frontmatter or {} if runbook else {}
        value = meta.get("contract", ENFORCE)
    return value if isinstance(value, str) and value in MODES else None
