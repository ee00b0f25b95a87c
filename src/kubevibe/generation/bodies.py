"""Checking the handler bodies a model wrote, without running them (compile-only: `ast.parse` and `symtable`).

`normalize_body` turns an answer into a function body (fences, a whole function, indentation, a cut last line);
`check_code` checks the rendered myapp.py: it parses, every handler returns, every name it uses is defined.
"""

from __future__ import annotations

import ast
import builtins
import re
import symtable
import textwrap

from kubevibe import bank
from kubevibe.pipeline import artifacts as names
from kubevibe.text import clip_end


class BodyError(ValueError):
    """A handler body from the model that cannot be used (str() is one sentence)."""


_FENCE = re.compile(r"```[a-zA-Z0-9_-]*[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)


def _as_function(body: str) -> ast.FunctionDef:
    """The body wrapped in a function and parsed (compile-only); SyntaxError if it is not valid Python."""
    (function,) = ast.parse("def _handler():\n" + textwrap.indent(body, "    ", lambda line: True)).body
    assert isinstance(function, ast.FunctionDef)
    return function


def _from_whole_function(code: str, function: str) -> str | None:
    """When the model wrote the whole function (maybe with helpers), its body with the helpers in front."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    target = next((d for d in defs if d.name == function), None)
    target = target or next((d for d in defs if any(bank.route_of(x) for x in d.decorator_list)), None)
    if target is None and len(tree.body) == 1 and defs:
        target = defs[0]  # one function under another name: the model renamed the handler
    if target is None:
        return None
    lines = code.splitlines()
    first = target.body[0]
    if first.lineno == target.lineno:  # def f(): return x
        body = "\n".join(ast.get_source_segment(code, s) or "" for s in target.body)
    else:
        body = textwrap.dedent("\n".join(lines[first.lineno - 1 : target.end_lineno]))
    helpers = [bank.statement_source(node, lines) for node in tree.body
               if node is not target and not bank.is_skeleton_stmt(node)]
    return "\n".join([*helpers, body]) if helpers else body


def normalize_body(text: str, function: str) -> str:
    """The model's answer as a function body indented by 4 spaces; BodyError if it is not a usable body."""
    fence = _FENCE.search(text)
    code = fence.group(1) if fence else text
    code = code.replace("\t", "    ").replace("\r\n", "\n").strip("\n")
    if not code.strip():
        raise BodyError("The handler body is empty.")
    candidates = []
    whole = _from_whole_function(textwrap.dedent(code), function)
    if whole is not None:
        candidates.append(whole)
    candidates.append(textwrap.dedent(code))
    lines = code.split("\n")
    if len(lines) > 1:  # first line flush left, the rest indented (a common way to write a body in a string)
        candidates.append(lines[0].strip() + "\n" + textwrap.dedent("\n".join(lines[1:])))
    if "\n" not in code and "\\n" in code:  # newlines written as the two characters \n
        candidates.append(textwrap.dedent(code.replace("\\n", "\n")))
    # Last: without the last line, which the schema's length bound may have cut in the middle.
    candidates.extend([c.rstrip("\n").rsplit("\n", 1)[0] for c in candidates if "\n" in c.rstrip("\n")])
    first_error: SyntaxError | None = None
    for body in candidates:
        body = body.strip("\n")
        try:
            wrapped = _as_function(body)
        except SyntaxError as exc:
            first_error = first_error or exc
            continue
        if all(line.strip() in ("", "pass", "...") or line.strip().startswith("#") for line in body.split("\n")):
            raise BodyError("The handler body does nothing (only pass, ... or comments).")
        if not _returns(wrapped):
            raise BodyError(f"The handler body of {function} never returns a response: {_first_line(body)!r}.")
        return textwrap.indent(body, "    ")
    assert first_error is not None
    raise BodyError(f"The handler body of {function} is not valid Python: {first_error.msg} "
                    f"(line {first_error.lineno} of the body).")


def _first_line(text: str, limit: int = 80) -> str:
    return clip_end(text.strip().split("\n")[0], limit)


def _returns(func: ast.FunctionDef) -> bool:
    stack: list[ast.AST] = list(func.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Return) and node.value is not None:
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue  # a nested function's return is not the handler's
        stack.extend(ast.iter_child_nodes(node))
    return False


def undefined_names(code: str) -> list[tuple[str, str]]:
    """(function, name) for each name a function reads that nothing defines. Compile-only (symtable)."""
    top = symtable.symtable(code, names.CODE, "exec")
    module_names = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    known = module_names | set(dir(builtins))
    out: list[tuple[str, str]] = []

    def walk(table: symtable.SymbolTable, owner: str) -> None:
        for child in table.get_children():
            label = owner or (child.get_name() if child.get_type() == "function" else "")
            for sym in child.get_symbols():
                if sym.is_referenced() and sym.is_global() and sym.get_name() not in known:
                    out.append((label, sym.get_name()))
            walk(child, label)

    walk(top, "")
    return sorted(set(out))


def check_code(code: str, handlers: list[str]) -> list[str]:
    """Problems of a scaffolded myapp.py, one sentence each; [] when it parses, every handler returns and every
    name is defined."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [f"myapp.py does not parse: {exc.msg} at line {exc.lineno}."]
    problems = []
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    for name in handlers:
        func = functions.get(name)
        if func is None:
            problems.append(f"the handler {name} is missing from myapp.py.")
        elif not _returns(func):
            problems.append(f"the handler {name} never returns a response (Flask answers 500 without one).")
    for function, name in undefined_names(code):
        problems.append(f"{function or 'module level'} uses {name!r}, which is not defined anywhere in myapp.py.")
    return problems
