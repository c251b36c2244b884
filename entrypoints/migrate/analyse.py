"""The analysis: a libcst visitor that finds every Celery construct of a tree, resolving names via imports.

Names go through libcst's QualifiedNameProvider, so ``itertools.chain``, ``inspect.signature``, a local
variable shadowing a task, or a web framework's ``request`` are not taken for Celery's; strings, comments
and docstrings are never code here.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Final

import libcst as cst
from libcst.metadata import (
    MetadataWrapper,
    PositionProvider,
    QualifiedName,
    QualifiedNameProvider,
    QualifiedNameSource,
)

from entrypoints.migrate import rules
from entrypoints.migrate.findings import Finding, Kind, Status, Unparsed

SKIPPED_DIRS: Final = frozenset(
    {".venv", "venv", "env", ".env", "site-packages", "migrations", "__pycache__", ".git", "node_modules", ".tox"}
)
CELERY_APP: Final = frozenset({"celery.Celery", "celery.app.Celery", "celery.app.base.Celery"})
TASK_DECORATORS: Final = frozenset({"celery.shared_task", "celery.task", "celery.app.shared_task"})
TASK_BASES: Final = frozenset({"celery.Task", "celery.app.task.Task", "celery.task.Task"})
CANVAS: Final = frozenset(
    f"celery.{p}{n}" for p in ("", "canvas.") for n in ("chain", "group", "chord", "signature", "chunks", "subtask")
)
FAIL_FAST: Final = (
    "a failed member fails the workflow at once: its sibling chains create no further steps (Celery lets them"
    " run on); check code that relies on the siblings' later steps"
)
RESULTS: Final = frozenset(f"celery.{p}{n}" for p in ("", "result.") for n in ("AsyncResult", "GroupResult"))
SCHEDULES: Final = {
    "celery.schedules.crontab": "crontab",
    "celery.schedules.solar": "solar",
    "celery.crontab": "crontab",
}
SIGNATURE_METHODS: Final = frozenset({"s", "si", "signature", "map", "starmap", "chunks"})


def module_name(path: Path) -> str:
    """The dotted module name Celery derives a task's name from: the file's packages (folders with an
    ``__init__.py``) up to the first folder that is not one, as Python imports it from there."""
    parts = [] if path.stem == "__init__" else [path.stem]
    folder = path.resolve().parent
    while (folder / "__init__.py").exists() and folder.parent != folder:
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)


def python_files(root: Path) -> Iterator[Path]:
    """The .py files under root (or root itself), skipping virtualenvs and migrations folders."""
    if root.is_file():
        yield root
        return
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not (Path(current) / d / "pyvenv.cfg").exists())
        for name in sorted(files):
            if name.endswith(".py"):
                yield Path(current) / name


class Source:
    """One parsed file: its path as reported, its module name, and the libcst module with metadata."""

    def __init__(self, path: Path, shown: str, module: str, wrapper: MetadataWrapper) -> None:
        self.path = path
        self.shown = shown
        self.package = module if path.stem == "__init__" else module.rpartition(".")[0]
        self.module = module
        self.wrapper = wrapper


def load(root: Path) -> tuple[list[Source], list[Unparsed]]:
    sources: list[Source] = []
    unparsed: list[Unparsed] = []
    base = root if root.is_dir() else root.parent
    for path in python_files(root):
        shown = path.relative_to(base).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
            ast.parse(text, filename=shown)  # the running Python's grammar decides, as it would at import
            tree = cst.parse_module(text)
        except (SyntaxError, UnicodeDecodeError, cst.ParserSyntaxError) as exc:
            reason = exc.msg if isinstance(exc, SyntaxError) else type(exc).__name__
            unparsed.append(Unparsed(file=shown, reason=f"cannot be parsed by this Python: {reason}"))
            continue
        sources.append(Source(path, shown, module_name(path), MetadataWrapper(tree)))
    return sources, unparsed


def _string(node: cst.BaseExpression) -> str | None:
    return (
        node.evaluated_value if isinstance(node, cst.SimpleString) and isinstance(node.evaluated_value, str) else None
    )


def _kwargs(call: cst.Call) -> dict[str, cst.Arg]:
    return {a.keyword.value: a for a in call.args if a.keyword is not None}


def absolute(name: str, level: int, package: str) -> str:
    """``from .name import`` (level 1) or ``..name`` (level 2) made absolute, from the module's package."""
    parts = package.split(".") if package else []
    parts = parts[: max(len(parts) - level + 1, 0)]
    return ".".join(p for p in [*parts, name] if p)


def resolved(qualified: Collection[QualifiedName], module: str, package: str) -> set[str]:
    """Absolute dotted names: a module's own names prefixed with it, relative imports made absolute."""
    out: set[str] = set()
    for q in qualified:
        name = q.name
        if q.source is QualifiedNameSource.LOCAL:
            name = f"{module}.{name}" if module else name
        elif name.startswith("."):
            name = absolute(name.lstrip("."), len(name) - len(name.lstrip(".")), package)
        out.add(name)
    return out


_CODE = cst.Module([])


def code(node: cst.CSTNode) -> str:
    return _CODE.code_for_node(node)


class Scanner(cst.CSTVisitor):
    """Collects the findings of one file; ``apps`` and ``tasks`` are the qualified names of every file's."""

    METADATA_DEPENDENCIES = (QualifiedNameProvider, PositionProvider)

    def __init__(self, source: Source, apps: set[str], tasks: set[str], collect_only: bool = False) -> None:
        super().__init__()
        self.source = source
        self.apps = apps
        self.tasks = tasks
        self.collect_only = collect_only
        self.findings: list[Finding] = []
        self.bound: list[str | None] = []  # the `self` name of each enclosing task function (None: not bound)
        self.results: set[str] = set()  # names assigned from .delay() / .apply_async() / AsyncResult(...)
        self.depth = 0

    def names(self, node: cst.CSTNode) -> set[str]:
        return resolved(self.get_metadata(QualifiedNameProvider, node, set()), self.source.module, self.source.package)

    def add(self, node: cst.CSTNode, kind: Kind, name: str, status: Status, detail: str) -> None:
        if not self.collect_only:
            line = self.get_metadata(PositionProvider, node).start.line
            self.findings.append(Finding(self.source.shown, line, kind, name, status, detail))

    def is_app(self, node: cst.BaseExpression) -> bool:
        return bool(self.names(node) & self.apps)

    def is_task(self, node: cst.BaseExpression) -> bool:
        return bool(self.names(node) & self.tasks)

    def is_signature(self, node: cst.BaseExpression) -> bool:
        if isinstance(node, cst.Call):
            if self.names(node.func) & CANVAS:
                return True
            f = node.func
            return isinstance(f, cst.Attribute) and f.attr.value in SIGNATURE_METHODS and self.is_task(f.value)
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.BitOr):
            return self.is_signature(node.left) or self.is_signature(node.right)
        return False

    # --- app, settings, beat -------------------------------------------------------------------------

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        """An app re-exported under another name (``from .celery import app as celery_app``) is the app."""
        if isinstance(node.names, cst.ImportStar):
            return
        module = code(node.module) if node.module is not None else ""
        if node.relative:
            module = absolute(module, len(node.relative), self.source.package)
        for alias in node.names:
            if f"{module}.{code(alias.name)}" in self.apps:
                local = code(alias.asname.name) if alias.asname is not None else code(alias.name)
                self.apps.add(f"{self.source.module}.{local}" if self.source.module else local)

    def visit_Assign(self, node: cst.Assign) -> None:
        value = node.value
        for target in node.targets:
            t = target.target
            if isinstance(value, cst.Call) and self.names(value.func) & CELERY_APP and isinstance(t, cst.Name):
                self.apps.add(f"{self.source.module}.{t.value}" if self.source.module else t.value)
            if isinstance(t, cst.Attribute) and isinstance(t.value, cst.Attribute):
                if t.value.attr.value == "conf" and self.is_app(t.value.value):
                    self.setting(t, t.attr.value, value)
            elif isinstance(t, cst.Name) and self.depth == 0 and t.value.startswith("CELERY"):
                self.setting(t, t.value, value)
            if isinstance(t, cst.Name) and isinstance(value, cst.Call) and self.is_result_source(value):
                self.results.add(t.value)

    def is_result_source(self, call: cst.Call) -> bool:
        f = call.func
        if self.names(f) & RESULTS:
            return True
        return isinstance(f, cst.Attribute) and f.attr.value in ("delay", "apply_async", "apply")

    def setting(self, node: cst.CSTNode, name: str, value: cst.BaseExpression) -> None:
        if name in rules.SCHEDULE_SETTINGS or name == "CELERY_BEAT_SCHEDULE":
            self.beat(value)
            return
        kind, status, detail = rules.classify_setting(name, code(value))
        self.add(node, kind, name, status, detail)  # type: ignore[arg-type]

    def beat(self, value: cst.BaseExpression) -> None:
        if not isinstance(value, cst.Dict):
            return
        for element in value.elements:
            if not isinstance(element, cst.DictElement):
                continue
            entry = _string(element.key) or code(element.key)
            schedule = "interval"
            if isinstance(element.value, cst.Dict):
                for item in element.value.elements:
                    is_schedule = isinstance(item, cst.DictElement) and _string(item.key) == "schedule"
                    if is_schedule and isinstance(item, cst.DictElement) and isinstance(item.value, cst.Call):
                        for q in self.names(item.value.func):
                            schedule = SCHEDULES.get(q, schedule)
            status, detail = rules.classify_schedule(schedule)
            self.add(element, "beat", entry, status, detail)

    # --- tasks -----------------------------------------------------------------------------------------

    def task_decorator(self, decorator: cst.BaseExpression) -> cst.Call | cst.BaseExpression | None:
        callee = decorator.func if isinstance(decorator, cst.Call) else decorator
        if self.names(callee) & TASK_DECORATORS:
            return decorator
        if isinstance(callee, cst.Attribute) and callee.attr.value == "task" and self.is_app(callee.value):
            return decorator
        return None

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.depth += 1
        bound: str | None = None
        for dec in node.decorators:
            found = self.task_decorator(dec.decorator)
            if found is None:
                self.signal_decorator(dec.decorator)
                continue
            options = {k: code(a.value) for k, a in _kwargs(found).items()} if isinstance(found, cst.Call) else {}
            name_arg = _kwargs(found).get("name") if isinstance(found, cst.Call) else None
            default = f"{self.source.module}.{node.name.value}" if self.source.module else node.name.value
            name = (_string(name_arg.value) if name_arg else None) or default
            self.tasks.add(default)
            status, detail = rules.classify_task_options(options)
            self.add(node, "task", name, status, detail)
            if options.get("bind") == "True" and node.params.params:
                bound = node.params.params[0].name.value
        self.bound.append(bound)

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.depth -= 1
        self.bound.pop()

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.depth += 1
        if not any(self.names(b.value) & TASK_BASES for b in node.bases):
            return
        name = f"{self.source.module}.{node.name.value}"
        for stmt in node.body.body:
            if isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    if isinstance(small, cst.Assign) and code(small.targets[0].target) == "name":
                        name = _string(small.value) or name
        self.add(
            node,
            "task_class",
            name,
            "difference",
            "a Task subclass is registered with current_app.register_task(Cls()); base= on a decorator keeps its hooks",
        )

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self.depth -= 1

    def signal_decorator(self, decorator: cst.BaseExpression) -> None:
        callee = decorator.func if isinstance(decorator, cst.Call) else decorator
        if isinstance(callee, cst.Attribute) and callee.attr.value == "connect":
            for q in self.names(callee.value):
                if q.startswith("celery.signals."):
                    signal = q.rsplit(".", 1)[1]
                    if signal in rules.SIGNALS:
                        self.add(
                            decorator, "signal", signal, "supported", "in-process callbacks with Celery's arguments"
                        )
                    else:
                        self.add(
                            decorator, "signal", signal, "unsupported", "no worker/beat process signals here: remove"
                        )

    # --- calls, canvases, results, bound use -----------------------------------------------------------

    def visit_Call(self, node: cst.Call) -> None:
        f = node.func
        qualified = self.names(f)
        if qualified & CELERY_APP:
            name = _string(node.args[0].value) if node.args and node.args[0].keyword is None else None
            self.add(
                node,
                "app",
                name or "Celery",
                "difference",
                "becomes current_app (from entrypoints.celery_compat); "
                + "broker and backend arguments are not used: jobs live in the engine's database",
            )
        elif qualified & CANVAS:
            shown = code(f).rsplit(".", 1)[-1]
            if {name.rsplit(".", 1)[-1] for name in qualified & CANVAS} & {"group", "chord"}:
                self.add(node, "canvas", shown, "difference", FAIL_FAST)
            else:
                self.add(node, "canvas", shown, "supported", "the same canvas as Celery's")
        elif qualified & RESULTS:
            self.add(
                node,
                "result",
                code(f).rsplit(".", 1)[-1],
                "difference",
                "an id never seen is UNKNOWN (not PENDING) and get() raises UnknownResultError",
            )
        if not isinstance(f, cst.Attribute):
            return
        method, receiver = f.attr.value, f.value
        if method in ("delay", "apply_async") and (self.is_task(receiver) or self.is_signature(receiver)):
            options = [k for k in _kwargs(node) if k not in ("args", "kwargs")] if method == "apply_async" else []
            serializer = _kwargs(node).get("serializer")
            if serializer is not None and "pickle" in code(serializer.value):
                self.add(node, "serializer", "serializer", "unsupported", rules.PICKLE)
            status, detail = rules.classify_call_options(method, options)
            self.add(node, "call", f"{code(receiver)}.{method}", status, detail)
        elif method in SIGNATURE_METHODS and self.is_task(receiver):
            self.add(
                node,
                "canvas",
                f"{code(receiver)}.{method}",
                "supported",
                "a signature as Celery's (extra arguments prepended)",
            )
        elif method == "apply" and self.is_task(receiver):
            self.add(node, "eager", f"{code(receiver)}.apply", "supported", "runs eagerly in the caller, as Celery")
        elif method == "send_task" and self.is_app(receiver):
            task = _string(node.args[0].value) if node.args else None
            self.add(
                node,
                "send_task",
                task or "send_task",
                "unsupported",
                "no send_task: use signature(name, args=..., kwargs=...).apply_async() or POST /jobs",
            )
        elif method == "config_from_object" and self.is_app(receiver):
            self.add(
                node,
                "setting",
                "config_from_object",
                "unsupported",
                "current_app has no config_from_object: set the settings that apply on current_app.conf",
            )
        elif method == "update" and isinstance(receiver, cst.Attribute) and receiver.attr.value == "conf":
            if self.is_app(receiver.value):
                for key, arg in _kwargs(node).items():
                    self.setting(arg, key, arg.value)
        elif method == "get" and self.is_result(receiver):
            self.add(node, "result", "get", "supported", "awaitable on the engine's loop, blocking from a thread")
        elif method in ("retry", "update_state", "replace", "add_to_chord") and self.in_bound(receiver):
            self.add(node, "bound", f"self.{method}", "supported", f"self.{method}() as Celery's")
        elif method == "connect" and any(q.startswith("celery.signals.") for q in self.names(receiver)):
            self.signal_decorator(f)

    def is_result(self, node: cst.BaseExpression) -> bool:
        if isinstance(node, cst.Name):
            return node.value in self.results
        if isinstance(node, cst.Call) and self.is_result_source(node):
            f = node.func
            return not isinstance(f, cst.Attribute) or self.is_task(f.value) or self.is_signature(f.value)
        return False

    def in_bound(self, node: cst.BaseExpression) -> bool:
        return (
            bool(self.bound)
            and self.bound[-1] is not None
            and isinstance(node, cst.Name)
            and (node.value == self.bound[-1])
        )

    def visit_Attribute(self, node: cst.Attribute) -> None:
        value = node.value
        if isinstance(value, cst.Attribute) and value.attr.value == "request" and self.in_bound(value.value):
            self.add(node, "bound", f"self.request.{node.attr.value}", "supported", "Celery's request field")
        elif node.attr.value == "state" and self.is_result(value):
            self.add(
                node,
                "result",
                "state",
                "difference",
                "PENDING while running unless track_started; UNKNOWN for an unseen id",
            )

    def visit_BinaryOperation(self, node: cst.BinaryOperation) -> None:
        if isinstance(node.operator, cst.BitOr) and self.is_signature(node.left) and self.is_signature(node.right):
            self.add(node, "canvas", "|", "supported", "chains as Celery's")


def analyse(root: Path) -> tuple[list[Finding], list[Unparsed], int]:
    """Every finding under root; two passes so a task or app defined in one file is known in every other."""
    sources, unparsed = load(root)
    findings, _, _ = scan(sources)
    return findings, unparsed, len(sources) + len(unparsed)


def scan(sources: list[Source]) -> tuple[list[Finding], set[str], set[str]]:
    apps: set[str] = set()
    tasks: set[str] = set()
    for _ in range(2):  # apps first, then tasks declared on apps of files read later
        for source in sources:
            source.wrapper.visit(Scanner(source, apps, tasks, collect_only=True))
    findings: list[Finding] = []
    for source in sources:
        scanner = Scanner(source, apps, tasks)
        source.wrapper.visit(scanner)
        findings.extend(scanner.findings)
    return findings, apps, tasks
