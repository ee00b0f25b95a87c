"""The plan expanded into cells: one RunSpec per (model, intent method, strategy, style, prompt, repetition).

A cell's key is a hash of (model label, method, strategy, prompt text, repetition index[, style]): it does not
depend on the order of the plan's lists nor on the other cells, so a continued experiment finds its finished
cells. The style enters the hash only when it is not the default (structured), so experiments made before styles
existed keep their keys.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from kubevibe.experiments.plan import ExperimentPlan

KEY_CHARS = 16
DEFAULT_STYLE = "structured"


def cell_key(model_label: str, intent_method: str, strategy: str, prompt: str, repetition: int,
             style: str = DEFAULT_STYLE) -> str:
    parts: list[Any] = [model_label, intent_method, strategy, prompt, repetition]
    if style != DEFAULT_STYLE:
        parts.append(style)
    payload = json.dumps(parts, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:KEY_CHARS]


@dataclass(frozen=True)
class RunSpec:
    key: str
    model_label: str
    llm: str
    model: str | None
    intent_method: str
    strategy: str
    prompt_index: int
    prompt: str
    repetition: int
    style: str = DEFAULT_STYLE
    settings: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def seed(self) -> int | None:
        base = self.settings.get("seed")
        return None if base is None else int(base) + self.repetition

    def describe(self) -> str:
        style = f" · {self.style}" if self.style != DEFAULT_STYLE else ""
        return (f"{self.model_label} · {self.intent_method} · {self.strategy}{style} · prompt {self.prompt_index} · "
                f"rep {self.repetition}")

    def row(self) -> dict[str, Any]:
        """The cell's identity columns in the store's runs table."""
        return {"cell_key": self.key, "model_label": self.model_label, "llm": self.llm, "model": self.model,
                "intent_method": self.intent_method, "strategy": self.strategy, "style": self.style,
                "prompt_index": self.prompt_index,
                "prompt": self.prompt, "repetition": self.repetition}


def expand(plan: ExperimentPlan) -> list[RunSpec]:
    """All cells, repetition-major: an experiment stopped half-way has an even share of every combination."""
    cells = []
    for rep in range(plan.repetitions):
        for p_index, prompt in enumerate(plan.prompts):
            for model in plan.models:
                for method in plan.intent_methods:
                    for strategy in plan.strategies:
                        for style in plan.styles:
                            cells.append(RunSpec(
                                key=cell_key(model.name, method, strategy, prompt, rep, style),
                                model_label=model.name, llm=model.llm, model=model.model, intent_method=method,
                                strategy=strategy, prompt_index=p_index, prompt=prompt, repetition=rep,
                                style=style, settings=plan.run_settings(model),
                            ))
    return cells


def matrix_size(plan: ExperimentPlan) -> int:
    return (len(plan.models) * len(plan.intent_methods) * len(plan.strategies) * len(plan.styles)
            * len(plan.prompts) * plan.repetitions)
