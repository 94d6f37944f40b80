"""Runbooks: a markdown mission with YAML frontmatter, and the validator that checks one before it is stored or run.

The validator reports errors (the runbook cannot work as written) and warnings (it can, but misses a habit that
makes runs judgeable), each with the line it concerns where there is one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

# A runbook's `limits`: the sandbox's and its model-call budget (runs/limits.py bounds them).
LIMIT_NAMES = ("cpus", "memory_mb", "pids", "disk_mb", "model_calls")

EVALUATIONS = ("programmatic", "rubric")
SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")
FENCE = re.compile(r"^```")
BOUND = re.compile(r"\bmax(?:imum)?\.?\s*(?:of\s*)?\d+\s*(?:rounds?|iterations?|attempts?|times)\b", re.I)
BUILT_IN_VARIABLES = frozenset({"results_dir"})
SHELL_FENCE = re.compile(r"^```(?:bash|sh|shell)[ \t]*$")


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning"
    code: str
    message: str
    line: int | None = None


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def valid(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "errors": [asdict(f) for f in self.errors],
            "warnings": [asdict(f) for f in self.warnings],
        }


@dataclass
class Section:
    title: str
    line: int
    text: str = ""
    level: int = 1  # the heading's number of `#`


@dataclass
class Runbook:
    frontmatter: dict[str, Any] | None
    body: str
    body_line: int  # the line the body starts on
    sections: list[Section]

    def section(self, *names: str) -> Section | None:
        """The first section whose title starts with one of the names (case-insensitive, after any numbering or
        emoji), else the first whose title contains one: "## Notes before the Final Checklist" is not the checklist
        when there is one."""
        wanted = [n.lower() for n in names]
        titles = [(s, re.sub(r"^[\W\d_]+", "", s.title.lower())) for s in self.sections]
        starting = next((s for s, t in titles if any(t.startswith(n) for n in wanted)), None)
        return starting or next((s for s, t in titles if any(n in t for n in wanted)), None)

    def part(self, *names: str) -> str | None:
        """The text of the first section named like ``section`` with its subsections (a `### Verification
        Script` under the Final Checklist belongs to it), or None when there is no such section."""
        found = self.section(*names)
        if found is None:
            return None
        index = self.sections.index(found)
        text = found.text
        for later in self.sections[index + 1 :]:
            if later.level <= found.level:
                break
            text += f"{'#' * later.level} {later.title}\n{later.text}"
        return text

    def variables(self) -> set[str]:
        return set(VARIABLE.findall(self.body))


def parse(text: str) -> tuple[Runbook, list[Finding]]:
    """Split frontmatter from body and the body into sections (headings inside code blocks are not headings)."""
    problems: list[Finding] = []
    frontmatter: dict[str, Any] | None = None
    body, body_line = text, 1
    lines = text.splitlines()
    if lines and lines[0].strip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
        if end is None:
            problems.append(Finding("error", "frontmatter_unclosed", "The frontmatter has no closing `---`", 1))
        else:
            try:
                loaded = yaml.safe_load("\n".join(lines[1:end])) or {}
            except yaml.YAMLError as exc:
                problems.append(Finding("error", "frontmatter_invalid", f"The frontmatter is not valid YAML: {exc}", 1))
                loaded = {}
            if not isinstance(loaded, dict):
                problems.append(Finding("error", "frontmatter_invalid", "The frontmatter must be a YAML mapping", 1))
                loaded = {}
            frontmatter = loaded
            body, body_line = "\n".join(lines[end + 1 :]), end + 2
    sections: list[Section] = []
    texts: list[list[str]] = []  # each section's lines, joined once at the end (in time linear in the runbook)
    fenced = False
    for number, line in enumerate(body.splitlines(), start=body_line):
        if FENCE.match(line.strip()):
            fenced = not fenced
        heading = None if fenced else HEADING.match(line)
        if heading:
            sections.append(Section(title=heading.group(2), line=number, level=len(heading.group(1))))
            texts.append([])
        elif sections:
            texts[-1].append(line)
    for section, lines in zip(sections, texts, strict=True):
        section.text = "".join(f"{line}\n" for line in lines)
    return Runbook(frontmatter, body, body_line, sections), problems


def key_line(text: str, key: str) -> int:
    """The line of a frontmatter key (1, the frontmatter's first line, when it is not there)."""
    pattern = re.compile(rf"^{re.escape(key)}\s*:")
    return next((n for n, line in enumerate(text.splitlines(), start=1) if pattern.match(line)), 1)


def shell_blocks(text: str) -> Iterator[tuple[int, str]]:
    """Each ```bash/sh/shell block as (the line its code starts on, its code): the commands an agent runs."""
    fenced = shell = False
    start, code = 0, list[str]()
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("```") and not fenced:
            fenced, shell, start, code = True, bool(SHELL_FENCE.match(line)), number + 1, []
        elif line.startswith("```"):
            fenced = False
            if shell:
                yield start, "\n".join(code)
        elif fenced:
            code.append(line)


def command_substitution_at(command: str) -> int | None:
    """Where Gemini CLI's shell tool sees command substitution in a command, which makes it refuse the whole
    command ("Blocked: command substitution detected"): `$(` (so `$((` too), a backtick, or `<(`/`>(` outside
    double quotes, anywhere outside single quotes, with its simple view of quoting (detectBashSubstitution in
    Gemini CLI 0.61, which no setting turns off). None when it sees none."""
    single = double = False
    i = 0
    while i < len(command):
        char = command[i]
        if char == "'" and not double:
            single = not single
        elif char == '"' and not single:
            double = not double
        elif not single:
            if char == "\\" and i + 1 < len(command) and (not double or command[i + 1] in '$`"\\\n'):
                i += 2
                continue
            opens = char == "$" or (char in "<>" and not double)
            if char == "`" or (opens and command[i + 1 : i + 2] == "("):
                return i
        i += 1
    return None


def gemini_substitutions(text: str) -> Iterator[Finding]:
    """A warning for each shell block Gemini CLI would refuse to run, at the line where it sees the substitution."""
    for start, code in shell_blocks(text):
        at = command_substitution_at(code)
        if at is not None:
            message = (
                'Gemini CLI refuses to run a command with `$(...)`, backticks, `<(...)` or `>(...)` ("Blocked: '
                'command substitution detected"), and no setting allows it: use a pipe, `xargs`, or '
                "`read -r name < file` instead"
            )
            yield Finding("warning", "gemini_command_substitution", message, start + code.count("\n", 0, at))


def validate(text: str) -> Report:
    runbook, findings = parse(text)
    report = Report(findings)
    add = report.findings.append
    meta = runbook.frontmatter
    if meta is None:
        add(Finding("error", "frontmatter_missing", "The runbook has no YAML frontmatter (start it with `---`)", 1))
        meta = {}
    version = meta.get("version")
    if version is None:
        add(Finding("error", "version_missing", "The frontmatter has no `version`", 1))
    elif not SEMVER.match(str(version)):
        message = f"`version` must be semver (like 1.0.0), not {version!r}"
        add(Finding("error", "version_invalid", message, key_line(text, "version")))
    evaluation = meta.get("evaluation")
    if evaluation is None:
        add(Finding("error", "evaluation_missing", "The frontmatter has no `evaluation` (programmatic or rubric)", 1))
    elif evaluation not in EVALUATIONS:
        message = f"`evaluation` must be one of {EVALUATIONS}, not {evaluation!r}"
        add(Finding("error", "evaluation_unknown", message, key_line(text, "evaluation")))
    if not meta.get("primary_outputs"):
        add(Finding("warning", "primary_outputs_missing", "The frontmatter names no `primary_outputs`", 1))
    if meta.get("contract", "enforce") not in ("enforce", "report"):
        message = f"`contract` must be `enforce` (the default) or `report`, not {meta.get('contract')!r}"
        add(Finding("error", "contract_invalid", message, key_line(text, "contract")))
    limits = meta.get("limits")
    if limits is not None and not (
        isinstance(limits, dict)
        and set(limits) <= set(LIMIT_NAMES)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in limits.values())
    ):
        message = f"`limits` must map any of {', '.join(LIMIT_NAMES)} to positive numbers"
        add(Finding("error", "limits_invalid", message, key_line(text, "limits")))

    required = {
        "objective_missing": ("Objective",),
        "required_outputs_missing": ("REQUIRED OUTPUT FILES", "Required outputs"),
        "final_checklist_missing": ("Final Checklist",),
        "evaluation_step_missing": ("Evaluat",),
        "iteration_missing": ("Iterat",),
    }
    found = {code: runbook.section(*names) for code, names in required.items()}
    for code, section in found.items():
        if section is None:
            name = required[code][0]
            add(Finding("error", code, f"No `{name}` section"))
    outputs = found["required_outputs_missing"]
    if outputs is not None:
        if "validation_report.json" not in outputs.text:
            add(
                Finding(
                    "error",
                    "validation_report_missing",
                    "REQUIRED OUTPUT FILES does not list `validation_report.json`",
                    outputs.line,
                )
            )
        if "summary.md" not in outputs.text:
            add(Finding("warning", "summary_missing", "REQUIRED OUTPUT FILES does not list `summary.md`", outputs.line))
    iterate = found["iteration_missing"]
    if iterate is not None and not BOUND.search(iterate.title + "\n" + iterate.text):
        message = "The iteration is not bounded: say how many rounds at most (like `max 3 rounds`)"
        add(Finding("error", "iteration_unbounded", message, iterate.line))
    checklist = found["final_checklist_missing"]
    if checklist is not None and "```" not in (runbook.part("Final Checklist") or ""):
        message = "The Final Checklist has no verification script (a fenced code block)"
        add(Finding("error", "verification_script_missing", message, checklist.line))

    variables = runbook.variables() - BUILT_IN_VARIABLES
    parameters = {v for v in variables if not v.startswith("secrets.")}
    if parameters and runbook.section("Parameters") is None:
        names = ", ".join(sorted(parameters))
        add(
            Finding(
                "error",
                "parameters_missing",
                f"Template variables ({names}) are used but there is no Parameters section",
            )
        )
    secrets = meta.get("secrets")
    declared: dict[str, Any] = secrets if isinstance(secrets, dict) else {}
    for secret in sorted(v.removeprefix("secrets.") for v in variables if v.startswith("secrets.")):
        if secret not in declared:
            add(
                Finding(
                    "error", "secret_undeclared", f"`{{{{secrets.{secret}}}}}` is used but not declared in `secrets`", 1
                )
            )

    for code, name in (("dependencies_missing", "Dependencies"), ("tips_missing", "Tips")):
        if runbook.section(name) is None:
            add(Finding("warning", code, f"No `{name}` section"))
    if meta.get("agent") == "gemini-cli":
        report.findings.extend(gemini_substitutions(text))
    for number, line in enumerate(text.splitlines(), start=1):
        if "{TODO:" in line:
            add(Finding("warning", "todo_left", "A `{TODO:` placeholder is left in the runbook", number))
    return report
