"""The rewrite: a libcst transformer moving Celery imports and task decorators to this project's API.

Only what is safe moves: a decorator whose options this engine takes (the task keeps the name Celery gave
it, written out as ``name=``), imports of names ``entrypoints.celery_compat`` provides, and ``Celery(...)``
app objects (they become ``current_app``, which carries ``conf`` and its ``beat_schedule`` unchanged).
Anything else is left as it is and listed. Running it again changes nothing.
"""

from __future__ import annotations

import ast
import difflib
from typing import Final

import libcst as cst
from libcst.metadata import QualifiedNameProvider

from entrypoints.migrate import rules
from entrypoints.migrate.analyse import CELERY_APP, TASK_DECORATORS, Source, code, resolved

COMPAT: Final = "entrypoints.celery_compat"
MOVABLE: Final = {
    "celery": frozenset(
        {"shared_task", "chain", "group", "chord", "signature", "chunks", "Task", "current_app", "states"}
        | {"AsyncResult", "GroupResult", "Signature", "subtask", "maybe_signature"}
    ),
    "celery.canvas": frozenset({"chain", "group", "chord", "signature", "chunks", "Signature", "maybe_signature"}),
    "celery.result": frozenset({"AsyncResult", "GroupResult", "ResultSet"}),
    "celery.schedules": frozenset({"crontab"}),
    "celery.exceptions": frozenset({"MaxRetriesExceededError", "SoftTimeLimitExceeded", "TimeLimitExceeded"})
    | frozenset({"Reject", "ChordError", "TaskRevokedError", "WorkerLostError"}),
    "celery.signals": frozenset(rules.SIGNALS),
}


class Rewriter(cst.CSTTransformer):
    """Rewrites one file; ``skipped`` lists (line text, why) for the constructs it left alone."""

    METADATA_DEPENDENCIES = (QualifiedNameProvider,)

    def __init__(self, source: Source, apps: set[str]) -> None:
        super().__init__()
        self.source = source
        self.apps = apps
        self.needed: set[str] = set()  # names this file now imports from the compat module
        self.skipped: list[str] = []

    def names(self, node: cst.CSTNode) -> set[str]:
        qualified = self.get_metadata(QualifiedNameProvider, node, set())
        return resolved(qualified, self.source.module, self.source.package)

    def leave_ImportFrom(
        self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom
    ) -> cst.ImportFrom | cst.RemovalSentinel:
        if updated_node.relative or updated_node.module is None or isinstance(updated_node.names, cst.ImportStar):
            return updated_node
        module = code(updated_node.module)
        movable = MOVABLE.get(module)
        if movable is None:
            return updated_node
        names = list(updated_node.names)
        if module == "celery":  # Celery(...) calls become current_app, imported where needed
            names = [a for a in names if code(a.name) != "Celery" or a.asname is not None]
            if not names:
                return cst.RemoveFromParent()
            names[-1] = names[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            updated_node = updated_node.with_changes(names=names)
        if not all(a.name.value in movable for a in names if isinstance(a.name, cst.Name)):
            kept = ", ".join(code(a.name) for a in names if code(a.name) not in movable)
            self.skipped.append(f"from {module} import ...: {kept} not provided here")
            return updated_node
        if module == "celery.signals":
            return updated_node.with_changes(module=cst.parse_expression("entrypoints.compat.signals"))
        for a in names:
            self.needed.add(code(a.name) if a.asname is None else code(a.asname.name))
        return updated_node.with_changes(module=cst.parse_expression(COMPAT))

    def leave_FunctionDef(self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef) -> cst.FunctionDef:
        decorators = []
        for original, dec in zip(original_node.decorators, updated_node.decorators, strict=True):
            decorators.append(self.task_decorator(original.decorator, dec, original_node.name.value))
        return updated_node.with_changes(decorators=decorators)

    def task_decorator(self, original: cst.BaseExpression, dec: cst.Decorator, function: str) -> cst.Decorator:
        callee = original.func if isinstance(original, cst.Call) else original
        is_task = bool(self.names(callee) & TASK_DECORATORS) or (
            isinstance(callee, cst.Attribute)
            and callee.attr.value == "task"
            and bool(self.names(callee.value) & self.apps)
        )
        if not is_task:
            return dec
        args = list(dec.decorator.args) if isinstance(dec.decorator, cst.Call) else []
        options = {a.keyword.value: code(a.value) for a in args if a.keyword is not None}
        status, why = rules.classify_task_options(options)
        if status == "unsupported" or any(a.keyword is None for a in args):
            self.skipped.append(f"@{code(callee)} on {function}: {why if status == 'unsupported' else 'positional'}")
            return dec
        if "name" not in options:
            default = f"{self.source.module}.{function}" if self.source.module else function
            args.insert(
                0,
                cst.Arg(
                    keyword=cst.Name("name"),
                    value=cst.SimpleString('"' + default + '"'),
                    equal=cst.AssignEqual(
                        whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")
                    ),
                ),
            )
            args = [
                a.with_changes(comma=cst.MaybeSentinel.DEFAULT) if i == len(args) - 1 else _with_comma(a)
                for i, a in enumerate(args)
            ]
        if isinstance(callee, cst.Name) and self.names(callee) & TASK_DECORATORS:  # its import moves: keep it
            return dec.with_changes(decorator=cst.Call(func=callee, args=args))
        self.needed.add("create_compatible_task")
        return dec.with_changes(decorator=cst.Call(func=cst.Name("create_compatible_task"), args=args))

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        if self.names(original_node.func) & CELERY_APP:
            self.needed.add("current_app")
            return cst.Name("current_app")
        return updated_node

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        have = _compat_imports(updated_node)
        missing = sorted(n for n in self.needed if n not in have and n in ("create_compatible_task", "current_app"))
        if not missing:
            return updated_node
        line = cst.parse_statement(f"from {COMPAT} import {', '.join(missing)}\n")
        body = list(updated_node.body)
        at = 0
        for i, stmt in enumerate(body):  # after the docstring and the __future__ imports
            if (_is_docstring(stmt) and i == 0) or _is_future(stmt):
                at = i + 1
        return updated_node.with_changes(body=[*body[:at], line, *body[at:]])


def _with_comma(arg: cst.Arg) -> cst.Arg:
    return arg.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))


def _is_docstring(stmt: cst.CSTNode) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and isinstance(stmt.body[0], cst.Expr)
        and (isinstance(stmt.body[0].value, cst.SimpleString | cst.ConcatenatedString))
    )


def _is_future(stmt: cst.CSTNode) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and isinstance(stmt.body[0], cst.ImportFrom)
        and (stmt.body[0].module is not None and code(stmt.body[0].module) == "__future__")
    )


def _compat_imports(module: cst.Module) -> set[str]:
    have: set[str] = set()
    for stmt in module.body:
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if not isinstance(small, cst.ImportFrom) or isinstance(small.names, cst.ImportStar):
                    continue
                if small.module is not None and code(small.module) == COMPAT:
                    have |= {code(a.name) for a in small.names}
    return have


def rewrite(sources: list[Source], apps: set[str]) -> tuple[dict[Source, str], list[str]]:
    """The new text of each file that changes, and what was left untouched (``file: why``)."""
    changed: dict[Source, str] = {}
    skipped: list[str] = []
    for source in sources:
        rewriter = Rewriter(source, apps)
        new = source.wrapper.visit(rewriter).code
        skipped.extend(f"{source.shown}: {why}" for why in rewriter.skipped)
        if new == source.wrapper.module.code:
            continue
        try:
            ast.parse(new)
        except SyntaxError as exc:  # never write a file that does not parse
            skipped.append(f"{source.shown}: not rewritten, the result would not parse ({exc.msg})")
            continue
        changed[source] = new
    return changed, skipped


def unified_diff(source: Source, new: str) -> str:
    old = source.wrapper.module.code
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{source.shown}", f"b/{source.shown}"
    )
    return "".join(lines)
