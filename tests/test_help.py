"""Every command's `--help` prints in full and exits 0, and every command the README shows exists as written.

The tree is walked from the real click command behind `kubevibe`, so a command added later is covered without
editing this file. `--help` runs through the real entry point in a subprocess (what a user types).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from kubevibe.cli import app

KUBEVIBE = [sys.executable, "-m", "kubevibe.cli"]
README = Path(__file__).resolve().parents[1] / "README.md"


def command_tree() -> dict[tuple[str, ...], Any]:
    """Every command and subcommand, keyed by its path of names (the root is ())."""
    root = typer.main.get_command(app)
    found: dict[tuple[str, ...], Any] = {}

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        found[path] = cmd
        if hasattr(cmd, "commands"):  # a group (typer ships its own click, so no isinstance on click's)
            for name, sub in cmd.commands.items():
                walk(sub, (*path, name))

    walk(root, ())
    return found


TREE = command_tree()


@pytest.mark.parametrize("path", sorted(TREE), ids=lambda p: " ".join(p) or "kubevibe")
@pytest.mark.parametrize("columns", ["60", "200"])
def test_help_prints_in_full_and_exits_0(path, columns):
    env = {**os.environ, "COLUMNS": columns}
    result = subprocess.run([*KUBEVIBE, *path, "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in result.stderr.lower(), result.stderr
    assert "Usage:" in result.stdout
    # In full: the last option every command has is listed, so the text did not stop halfway.
    assert "--help" in result.stdout
    help_text = TREE[path].help or ""
    if help_text:  # the command's own description is shown (its first words, wrapping aside)
        first_words = " ".join(help_text.split()[:3])
        assert first_words in " ".join(result.stdout.split()), result.stdout


def test_brackets_in_help_are_literal():
    """Help strings with brackets (HOST[:PORT][/PATH], [env X]) are shown as written, not read as markup."""
    result = subprocess.run([*KUBEVIBE, "run", "--help"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "COLUMNS": "250"})
    assert result.returncode == 0, result.stderr
    assert "HOST[:PORT][/PATH]" in result.stdout
    assert "[env KUBEVIBE_LLM]" in result.stdout


def readme_commands() -> list[list[str]]:
    """The `kubevibe ...` command lines of the README's shell blocks, split like a shell would."""
    text = README.read_text(encoding="utf-8")
    lines: list[list[str]] = []
    for block in re.findall(r"```(?:sh|bash|console)\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()  # drop trailing comments
            for part in re.split(r"&&|;|\|", line):
                words = shlex.split(part.strip(), comments=True) if part.strip() else []
                while words and ("=" in words[0] and not words[0].startswith("-")):
                    words.pop(0)  # VAR=value prefixes
                if words and words[0].endswith("kubevibe"):
                    lines.append(words[1:])
    return lines


def test_readme_commands_exist_with_their_flags():
    commands = readme_commands()
    assert len(commands) >= 10, "the README shows its commands in sh blocks"
    problems = []
    for words in commands:
        path: tuple[str, ...] = ()
        rest = list(words)
        while rest and (*path, rest[0]) in TREE:
            path = (*path, rest.pop(0))
        if not path:
            problems.append(f"kubevibe {' '.join(words)}: no such command")
            continue
        options = {opt for param in TREE[path].params for opt in (*param.opts, *param.secondary_opts)}
        for word in rest:
            flag = word.split("=", 1)[0]
            if flag.startswith("-") and flag != "-" and flag not in options:
                problems.append(f"kubevibe {' '.join(words)}: {' '.join(path)} has no option {flag}")
    assert not problems, "\n".join(problems)
