"""Nothing but ``runs/sandboxes/hostile.py`` touches a tree a sandbox can write (SPEC, "Trust").

The check reads the platform's source: within each function, any value derived from a sandbox tree (a name or
attribute called ``workspace``, ``results``, ``assets`` or ``home``, and whatever is assigned or iterated from
one) must not reach a filesystem call (``read_bytes``, ``open``, ``rglob``, ``os.stat``, ``shutil``...): it goes
to ``hostile`` instead. The few places that make the tree before any sandbox process exists are listed with
their reason. The check is proved on the shapes the attacks exploited, so it keeps catching them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("orgs", "trajectories", "runs", "evals", "jetty_site", "jetty_cli")
READER = "runs/sandboxes/hostile.py"
TREES = frozenset({"workspace", "results", "assets", "home"})
PATH_METHODS = frozenset(
    {
        "read_bytes", "read_text", "open", "rglob", "glob", "iterdir", "walk", "is_file", "is_dir", "is_symlink",
        "exists", "stat", "lstat", "resolve", "readlink", "write_bytes", "write_text", "mkdir", "unlink", "rmdir",
        "touch", "chmod", "lchmod", "symlink_to", "hardlink_to", "rename", "samefile", "absolute",
    }
)  # fmt: skip
FS_MODULES = frozenset({"os", "shutil", "io", "pathlib", "tarfile", "zipfile"})
# Calls whose result is still the path they were given (others return something else: a container, a process).
PATH_BUILDERS = frozenset({"Path", "PurePath", "PurePosixPath", "str", "fspath", "sorted", "list", "tuple", "iter"})
# (file, function): why it may touch a sandbox tree without the reader.
MADE_BEFORE_THE_SANDBOX_RUNS = {
    ("runs/sandboxes/base.py", "__init__"): "makes the empty tree; no sandbox process exists yet",
    ("runs/sandboxes/bubblewrap.py", "__init__"): "gives the fresh tree to the sandbox user before it starts",
    ("runs/sandboxes/docker.py", "__init__"): "gives the fresh tree to the sandbox user before it starts",
    ("runs/agents/__init__.py", "launch"): "writes the agent's configuration into its fresh home before it starts",
    ("runs/agents/clis.py", "launch"): "writes the CLI's configuration into its fresh home before it starts",
    ("runs/agents/clis.py", "mission_prompt"): "writes a long runbook into the fresh home before the agent starts",
}


Function = ast.FunctionDef | ast.AsyncFunctionDef
CALLED = "<a call returning a tree path>"


def _is_reader(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "hostile"


def _targets(node: ast.AST) -> set[str]:
    """What an assignment to ``node`` taints: a name, an attribute's name (not its object), a container."""
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, ast.Attribute):
        return {node.attr}
    if isinstance(node, ast.Subscript | ast.Starred):
        return _targets(node.value)
    if isinstance(node, ast.Tuple | ast.List):
        return {name for element in node.elts for name in _targets(element)}
    return set()


class Flow:
    """Where the paths of sandbox trees flow in a set of modules.

    Within a function through assignments, loops and ``with``, path operators, methods of a path and path builders
    (not through the arguments of other calls: a path handed to Docker does not make its container a path); into a
    function (or a class's ``__init__``) called with a tainted argument, by its name or as ``self.method``; out of
    a function that returns a tainted value; and to every method of a class through an attribute set from one.
    What the reader returns is data, not a path.
    """

    def __init__(self, trees: dict[str, ast.Module]):
        self.functions: list[tuple[str, str | None, Function]] = []
        for filename, tree in trees.items():
            classes = [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
            methods = [(filename, c.name, f) for c in classes for f in c.body if isinstance(f, Function)]
            known = {id(f) for _, _, f in methods}
            loose = [f for f in ast.walk(tree) if isinstance(f, Function) and id(f) not in known]
            self.functions += methods + [(filename, None, f) for f in loose]
        self.by_name: dict[str, list[tuple[Function, bool]]] = {}
        self.methods: dict[tuple[str, str | None, str], list[Function]] = {}
        for filename, owner, function in self.functions:
            if owner is None:
                self.by_name.setdefault(function.name, []).append((function, False))
            else:
                self.methods.setdefault((filename, owner, function.name), []).append(function)
                if function.name == "__init__":
                    self.by_name.setdefault(owner, []).append((function, True))
        self.seeds: dict[int, set[str]] = {id(f): set() for _, _, f in self.functions}
        self.attributes: dict[tuple[str, str | None], set[str]] = {}
        self.returning: set[int] = set()
        while self._spread():
            pass

    def callees(self, call: ast.Call, filename: str, owner: str | None) -> list[tuple[Function, bool]]:
        func = call.func
        if isinstance(func, ast.Name):
            return self.by_name.get(func.id, [])
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self":
            return [(m, True) for m in self.methods.get((filename, owner, func.attr), [])]
        return []

    def flows(self, node: ast.AST, filename: str, owner: str | None) -> set[str]:
        """The names whose value may flow into the expression's value."""
        if _is_reader(node):
            return set()
        if isinstance(node, ast.Call):
            func = node.func
            found = self.flows(func, filename, owner)
            if any(id(f) in self.returning for f, _ in self.callees(node, filename, owner)):
                found.add(CALLED)
            builder = (isinstance(func, ast.Name) and func.id in PATH_BUILDERS) or (
                isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute) and func.value.attr == "path"
            )
            for argument in [*node.args, *(k.value for k in node.keywords)] if builder else []:
                found |= self.flows(argument, filename, owner)
            return found
        found = {node.id} if isinstance(node, ast.Name) else {node.attr} if isinstance(node, ast.Attribute) else set()
        for child in ast.iter_child_nodes(node):
            found |= self.flows(child, filename, owner)
        return found

    def tainted(self, filename: str, owner: str | None, function: Function) -> set[str]:
        """Names in the function that hold a sandbox tree's path, or something made from one."""
        tainted = TREES | {CALLED} | self.seeds[id(function)] | self.attributes.get((filename, owner), set())
        while True:
            before = len(tainted)
            for node in ast.walk(function):
                value, targets = None, []
                if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign | ast.NamedExpr):
                    value, targets = node.value, node.targets if isinstance(node, ast.Assign) else [node.target]
                elif isinstance(node, ast.For | ast.comprehension):
                    value, targets = node.iter, [node.target]
                elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                    value, targets = node.context_expr, [node.optional_vars]
                if value is not None and self.flows(value, filename, owner) & tainted:
                    tainted |= {name for target in targets for name in _targets(target)}
            if len(tainted) == before:
                return tainted

    def _spread(self) -> bool:
        """One pass of taint across calls, returns and attributes; whether anything changed."""
        changed = False
        for filename, owner, function in self.functions:
            tainted = self.tainted(filename, owner, function)
            for node in ast.walk(function):
                if isinstance(node, ast.Return) and node.value is not None and id(function) not in self.returning:
                    if self.flows(node.value, filename, owner) & tainted:
                        self.returning.add(id(function))
                        changed = True
                if owner and isinstance(node, ast.Assign) and self.flows(node.value, filename, owner) & tainted:
                    fields = self.attributes.setdefault((filename, owner), set())
                    new = {t.attr for t in node.targets if isinstance(t, ast.Attribute)} - fields
                    fields |= new
                    changed |= bool(new)
                if not isinstance(node, ast.Call) or _is_reader(node):
                    continue
                for callee, is_method in self.callees(node, filename, owner):
                    params = [a.arg for a in callee.args.posonlyargs + callee.args.args][1 if is_method else 0 :]
                    passed = list(zip(params, node.args, strict=False))
                    passed += [(k.arg, k.value) for k in node.keywords if k.arg]
                    for param, value in passed:
                        if param not in self.seeds[id(callee)] and self.flows(value, filename, owner) & tainted:
                            self.seeds[id(callee)].add(param)
                            changed = True
        return changed

    def touches(self, call: ast.Call, filename: str, owner: str | None, tainted: set[str]) -> bool:
        """Whether the call is a filesystem call on, or with, a tainted value."""
        func = call.func
        arguments = [*call.args, *(k.value for k in call.keywords)]
        with_tainted = any(self.flows(a, filename, owner) & tainted for a in arguments)
        if isinstance(func, ast.Name):
            return func.id == "open" and with_tainted
        if not isinstance(func, ast.Attribute) or _is_reader(call):
            return False
        module = func.value.id if isinstance(func.value, ast.Name) else None
        if module in FS_MODULES or (isinstance(func.value, ast.Attribute) and func.value.attr == "path"):
            return with_tainted
        return func.attr in PATH_METHODS and bool(self.flows(func.value, filename, owner) & tainted)


def raw_tree_access(trees: dict[str, ast.Module]) -> list[str]:
    """Each place in these modules that touches a sandbox tree's path with a filesystem call of its own."""
    flow = Flow(trees)
    found = []
    for filename, owner, function in flow.functions:
        if (filename, function.name) in MADE_BEFORE_THE_SANDBOX_RUNS:
            continue
        tainted = flow.tainted(filename, owner, function)
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and flow.touches(node, filename, owner, tainted):
                found.append(f"{filename}:{node.lineno} in {function.name}: {ast.unparse(node)[:100]}")
    return sorted(set(found))


def sources() -> list[Path]:
    return sorted(
        path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts and path.relative_to(ROOT).as_posix() != READER
    )


def parsed(paths: list[Path]) -> dict[str, ast.Module]:
    return {path.relative_to(ROOT).as_posix(): ast.parse(path.read_text()) for path in paths}


def test_only_the_reader_touches_what_a_sandbox_wrote():
    assert raw_tree_access(parsed(sources())) == []


def test_the_exceptions_still_exist():
    """An exception for a function that is gone would hide the next one of that name."""
    present = set()
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                present.add((path.relative_to(ROOT).as_posix(), node.name))
    assert set(MADE_BEFORE_THE_SANDBOX_RUNS) <= present


# The shapes of the code the attacks went through, reduced: the check must flag each filesystem call in them.
BEFORE = {
    "runs/execution.py": """
def execute(sandbox):
    collect(run, job, sandbox.results, agent.final)
    Timeline(run.pk, agent, sandbox.workspace)

def collect(run, job, results, final_answer):
    for path in sorted(results.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
    summary = results / "summary.md"
    job.final_answer = final_answer or (summary.read_text() if summary.is_file() else "")
""",
    "runs/timeline.py": """
class Timeline:
    def __init__(self, run_id, agent, tree):
        self.watch = WorkspaceWatch(tree)
""",
    "runs/agents/__init__.py": """
class WorkspaceWatch:
    def __init__(self, root):
        self.root = root

    def snapshot(self, name):
        path = self.root / name
        with open(path, "rb") as handle:
            return handle.read()
""",
    "runs/sandboxes/base.py": """
def dir_size_mb(path):
    return sum(os.lstat(os.path.join(r, n)).st_size for r, _, names in os.walk(path) for n in names)

class Execution:
    def _over_a_limit(self):
        return dir_size_mb(self.sandbox.workspace)
""",
}
AFTER = """
def collect(run, job, workspace, final_answer):
    for entry in hostile.walk(workspace, "results"):
        data = hostile.read(workspace, f"results/{entry.path}", 100)
        store(entry.path, data)
    with artifact.file.open("rb") as handle:
        handle.read()

def store(path, data):
    with open("/var/log/x", "ab") as log:
        log.write(data)
"""


def test_the_check_catches_the_shapes_the_attacks_used():
    found = raw_tree_access({name: ast.parse(text) for name, text in BEFORE.items()})
    assert sorted(hit.split(": ", 1)[1] for hit in found) == [
        "open(path, 'rb')",
        "os.lstat(os.path.join(r, n))",
        "os.walk(path)",
        "path.is_file()",
        "path.is_symlink()",
        "path.read_bytes()",
        "results.rglob('*')",
        "summary.is_file()",
        "summary.read_text()",
    ], found
    assert raw_tree_access({"new.py": ast.parse(AFTER)}) == []
