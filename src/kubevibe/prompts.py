"""Prompt templates, kept as Jinja2 files in assets/prompts/ so they can be read and changed without code."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import jinja2


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    # StrictUndefined: a template that names a missing variable is a bug, not an empty string in a prompt.
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_load), undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        autoescape=False,
    )


def _load(name: str) -> str:
    return resources.files("kubevibe.assets").joinpath("prompts", name).read_text(encoding="utf-8")


def render(name: str, **values: object) -> str:
    return _env().get_template(name).render(**values).strip() + "\n"
