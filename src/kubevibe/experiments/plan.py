"""The experiment plan: which models, intent methods, strategies, prompting styles and prompts, how many repetitions.

A plan is a YAML file (or the same fields given as flags):

    name: small-models                 # names the experiment directory: experiments/<name>/
    models:
      - llm: ollama://127.0.0.1:11434  # any --llm spec except `auto` (an experiment must not pick at run time)
        model: qwen2.5-coder:7b
        label: qwen7b                  # the name in tables and plots; default: the model name, else the spec
        settings: {temperature: 0.7}   # optional, this model only
    intent_methods: [none, json-with-required]
    strategies: [auto]                 # auto, scaffold, full
    styles: [structured, conversational]   # prompting styles (default: structured only)
    prompts: ["Develop a credit card validation microservice"]
    prompts_file: prompts.txt          # and/or: one prompt per line (# comments), or a YAML list
    repetitions: 5
    workers: 1                         # runs at a time (may be changed when continuing an experiment)
    settings: {timeout: 900, max_steps: 30, seed: 42}   # any run setting except the matrix's own

`settings.seed` is a base: repetition r runs with seed + r, so repetitions are not copies of each other.
Relative paths (prompts_file, replay:PATH, kubeconfig) are relative to the plan file. Once loaded, a plan is
*normalized* (prompts read in, paths made absolute): the experiment directory keeps that form as plan.yaml.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kubevibe.errors import UsageError
from kubevibe.settings import IntentMethod, Settings
from kubevibe.text import clip_end

# Settings the matrix itself sets for each run; a plan may not override them through `settings`.
MATRIX_SETTINGS = frozenset({"llm", "model", "intent_method", "strategy", "style", "runs_dir", "tests",
                             "tests_source"})
PATH_SETTINGS = frozenset({"kubeconfig", "slo"})  # relative to the plan file
# Settings of the experiment process, not of its runs (flags of `kubevibe experiment`).
EXPERIMENT_SETTINGS = frozenset({"executor", "ray_address"})

Strategy = Literal["auto", "scaffold", "full"]
Style = Literal["structured", "conversational"]


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    llm: str = Field(min_length=1)
    model: str | None = None
    label: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("llm")
    @classmethod
    def _known_spec(cls, value: str) -> str:
        from kubevibe.llm.resolve import parse_spec

        value = value.strip()
        if value == "auto":
            raise ValueError("'auto' chooses a backend at run time, which an experiment must not do; name it "
                             "(ollama://HOST:PORT, openai://HOST:PORT/v1, embedded or replay:PATH)")
        try:
            parse_spec(value)
        except UsageError as exc:
            raise ValueError(exc.message.rstrip(".")) from None
        return value

    @property
    def name(self) -> str:
        return self.label or self.model or self.llm


class ExperimentPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
    models: list[ModelEntry] = Field(min_length=1)
    intent_methods: list[IntentMethod] = Field(default_factory=lambda: ["none"], min_length=1)
    strategies: list[Strategy] = Field(default_factory=lambda: ["auto"], min_length=1)
    styles: list[Style] = Field(default_factory=lambda: ["structured"], min_length=1)
    prompts: list[str] = Field(default_factory=list)
    prompts_file: str | None = None
    repetitions: int = Field(1, ge=1, le=10_000)
    workers: int = Field(1, ge=1, le=64)
    settings: dict[str, Any] = Field(default_factory=dict)
    # A benchmark's hidden acceptance tests: one Tavern file per prompt (same order), run with source benchmark.
    tests_files: list[str] = Field(default_factory=list)

    @field_validator("prompts")
    @classmethod
    def _clean_prompts(cls, prompts: list[str]) -> list[str]:
        cleaned = [p.strip() for p in prompts]
        for i, p in enumerate(cleaned):
            if not p:
                raise ValueError(f"prompt {i} is empty")
        return cleaned

    @model_validator(mode="after")
    def _consistent(self) -> "ExperimentPlan":
        if self.tests_files and len(self.tests_files) != len(self.prompts):
            raise ValueError(f"tests_files has {len(self.tests_files)} files for {len(self.prompts)} prompts")
        for field in ("intent_methods", "strategies", "styles", "prompts"):
            values = getattr(self, field)
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"{field} lists {_short(dupes[0])!r} twice")
        labels = [m.name for m in self.models]
        dupes = sorted({v for v in labels if labels.count(v) > 1})
        if dupes:
            raise ValueError(f"models: two models are labelled {dupes[0]!r}; give each a distinct `label`")
        for i, m in enumerate(self.models):
            if not re.fullmatch(r"[^\x00-\x1f/\\]{1,80}", m.name):
                raise ValueError(f"models[{i}].label {m.name!r} must be 1 to 80 printable characters without slashes")
        _check_settings("settings", self.settings)
        if "conversational" in self.styles and "scaffold" in self.strategies:
            raise ValueError("the scaffold strategy is structured prompting and cannot run with the conversational "
                             "style; use strategies [auto] or [full] with it")
        for i, m in enumerate(self.models):
            _check_settings(f"models[{i}].settings", m.settings)
            # The whole combination must make valid run settings, for every cell.
            for method in self.intent_methods:
                for strategy in self.strategies:
                    values = {**self.settings, **m.settings, "llm": m.llm, "model": m.model,
                              "intent_method": method, "strategy": strategy, "style": self.styles[0]}
                    try:
                        Settings(**values)
                    except ValidationError as exc:
                        err = exc.errors()[0]
                        name = ".".join(str(x) for x in err["loc"])
                        where = f"models[{i}].settings" if name in m.settings else "settings"
                        raise ValueError(f"{where}.{name}: {_msg(err)}") from None
        return self

    # -- derived --------------------------------------------------------------------------------------
    def run_settings(self, model: ModelEntry) -> dict[str, Any]:
        """The settings a run of this model gets from the plan (besides the matrix's own)."""
        return {**self.settings, **model.settings}

    def identity(self) -> dict[str, Any]:
        """What must not change when an experiment is continued (everything but the number of workers)."""
        return self.model_dump(mode="json", exclude={"workers"})

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=110)


def _check_settings(where: str, values: dict[str, Any]) -> None:
    for key in values:
        if key not in Settings.model_fields:
            raise ValueError(f"{where}.{key} is not a run setting (known: {', '.join(sorted(Settings.model_fields))})")
        if key in MATRIX_SETTINGS:
            raise ValueError(f"{where}.{key} is set by the experiment matrix itself; use the plan's "
                             "models / intent_methods / strategies / styles fields instead")
        if key in EXPERIMENT_SETTINGS:
            raise ValueError(f"{where}.{key} is not a run setting: give --{key.replace('_', '-')} to "
                             "`kubevibe experiment`")


def _short(text: Any, limit: int = 60) -> str:
    text = str(text)
    return clip_end(text, limit)


def _msg(err: dict) -> str:
    msg = str(err.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg[:1].lower() + msg[1:]


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# -- loading ------------------------------------------------------------------------------------------------
def validate_plan(data: Any, *, base_dir: Path, source: str) -> ExperimentPlan:
    """Validate raw plan data and normalize it. Every problem is one sentence naming the field."""
    if not isinstance(data, dict):
        raise UsageError(f"{source} must be a mapping of plan fields (name, models, prompts, ...).")
    data = dict(data)
    try:
        if data.get("prompts_file"):
            data["prompts"] = list(data.get("prompts") or []) + read_prompts_file(base_dir / str(data["prompts_file"]))
            data["prompts_file"] = None
        if isinstance(data.get("prompts"), str):
            data["prompts"] = [data["prompts"]]
        data["models"] = [_absolute_model(m, base_dir) for m in data.get("models") or []] or data.get("models")
        if isinstance(data.get("settings"), dict):
            data["settings"] = _absolute_paths(data["settings"], base_dir)
        plan = ExperimentPlan.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _loc(err["loc"])
        msg = _msg(err)
        if err.get("type") == "missing":
            raise UsageError(f"{source}: the field {where!r} is required.") from None
        if where:
            raise UsageError(f"{source}: {where}: {msg}.") from None
        raise UsageError(f"{source}: {msg}.") from None
    if not plan.prompts:
        raise UsageError(f"{source}: give at least one prompt (the field 'prompts' or 'prompts_file').")
    return plan


def load_plan(path: Path) -> ExperimentPlan:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"The plan file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"The plan file {path} cannot be read: {getattr(exc, 'strerror', None) or exc}.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise UsageError(f"The plan file {path} is not valid YAML{where}.") from None
    return validate_plan(data, base_dir=path.resolve().parent, source=f"Plan {path}")


def read_prompts_file(path: Path) -> list[str]:
    """One prompt per non-empty line (lines starting with # are comments), or a YAML/JSON list of strings."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise UsageError(f"The prompts file {path} cannot be read.") from None
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        try:
            items = yaml.safe_load(text)
        except yaml.YAMLError:
            raise UsageError(f"The prompts file {path} is not valid YAML.") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise UsageError(f"The prompts file {path} must hold a list of strings.")
        return items
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _absolute_model(entry: Any, base_dir: Path) -> Any:
    if not isinstance(entry, dict):
        return entry
    entry = dict(entry)
    llm = entry.get("llm")
    if isinstance(llm, str) and llm.strip().startswith("replay:"):
        target = Path(llm.strip().removeprefix("replay:")).expanduser()
        if str(target) and not target.is_absolute():
            target = (base_dir / target).resolve()
        if not target.exists():
            raise UsageError(f"The replay log {target} of model {entry.get('label') or llm!r} does not exist.")
        entry["llm"] = f"replay:{target}"
    if isinstance(entry.get("settings"), dict):
        entry["settings"] = _absolute_paths(entry["settings"], base_dir)
    return entry


def _absolute_paths(settings: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    out = dict(settings)
    for key in PATH_SETTINGS & set(out):
        if isinstance(out[key], str) and out[key] and not Path(out[key]).expanduser().is_absolute():
            out[key] = str((base_dir / out[key]).resolve())
    return out


def plan_from_flags(*, name: str | None, llm: str | None, models: list[str], intent_methods: list[str],
                    strategies: list[str], prompts: list[str], prompts_file: Path | None, repetitions: int | None,
                    settings: dict[str, Any], styles: list[str] | None = None) -> ExperimentPlan:
    """A plan from command-line flags: one backend, one or more model names on it."""
    if not llm:
        raise UsageError("Give a plan file (kubevibe experiment PLAN.yaml) or at least --llm and --prompt.")
    data: dict[str, Any] = {
        "name": name or "experiment",
        "models": [{"llm": llm, "model": m} for m in models] or [{"llm": llm}],
        "prompts": prompts,
        "settings": {k: v for k, v in settings.items() if v is not None},
    }
    if intent_methods:
        data["intent_methods"] = intent_methods
    if strategies:
        data["strategies"] = strategies
    if styles:
        data["styles"] = styles
    if prompts_file:
        data["prompts_file"] = str(prompts_file)
    if repetitions is not None:
        data["repetitions"] = repetitions
    return validate_plan(data, base_dir=Path.cwd(), source="The experiment flags")
