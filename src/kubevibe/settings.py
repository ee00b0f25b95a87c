"""Settings: each one resolved as flag > environment > config file > default, remembering its source.

The reference tool's environment variables keep their names and meanings: MODEL, INTENT_METHOD, IVAL_METHOD,
FIXFZERO, TIMEOUT (seconds for the whole run), N (most stage executions). Unlike the reference tool, the
defaults bound both time and stage executions, so a run always ends.

Every environment variable the tool reads is named here. The run settings are resolved by `resolve_settings`;
the machine settings (MACHINE_SETTINGS) are also read on their own by the infrastructure code through
`machine_setting()` (it serves `setup`, `doctor` and `gc`, which have no run settings). Two variables are not
settings of a run and are not in `Settings`: KUBEVIBE_DEBUG (`debug_traceback()`: show the traceback of an
internal error) and the secret OPENAI_API_KEY (`openai_api_key()`: a run records only whether it was set, never its
value). Variables KubeVibe sets for its own subprocesses (KUBEVIBE_ACCEPT_RECORD, PYTHONPATH) are read where
those subprocesses start.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kubevibe.errors import SettingError, UsageError

IntentMethod = Literal["none", "curated-llm-zero-shot", "curated-llm-few-shot", "only-json-as-format", "json-with-required"]
INTENT_METHODS: tuple[str, ...] = IntentMethod.__args__  # type: ignore[attr-defined]


# The names --target accepts: the built-in providers, and any that kubevibe.targets.register_target adds (kept
# here, not read from the targets, so settings stays below them).
TARGET_NAMES: list[str] = ["local", "kubernetes"]


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    llm: str = Field("auto", description="LLM backend spec: auto, ollama://host:port, openai://host:port/v1, embedded, replay:PATH")
    model: str | None = Field(None, description="model name; default: the backend's own default")
    intent_method: IntentMethod = "none"
    ival_method: Literal["none", "llm-as-a-judge"] = "none"
    fix_from_zero: bool = False
    timeout: float = Field(1800.0, gt=0, allow_inf_nan=False, description="seconds for the whole run")
    max_steps: int = Field(40, ge=1, description="most stage executions in one run")
    max_fix_attempts: int = Field(10, ge=0)
    max_consecutive_failures: int = Field(6, ge=1)
    max_judge_retries: int = Field(2, ge=0)
    strategy: Literal["auto", "scaffold", "full"] = "auto"
    builder: Literal["podman", "docker"] = "podman"
    target: str = Field("local", description="a registered target: local, kubernetes (kubevibe.targets)")
    runs_dir: Path = Path("runs")
    temperature: float = Field(0.2, ge=0, le=2, allow_inf_nan=False)
    seed: int | None = None
    num_ctx: int = Field(8192, ge=512)
    max_tokens: int = Field(4096, ge=16)
    think: bool | None = None
    llm_timeout: float = Field(600.0, gt=0, allow_inf_nan=False, description="seconds for one LLM call (in total)")
    k8s_version: str = Field("1.33.0", pattern=r"^\d+\.\d+\.\d+$")
    allow_node_port: bool = False
    stage_timeout: float = Field(600.0, gt=0, allow_inf_nan=False,
                                 description="seconds for one external command of a stage")
    ready_timeout: float = Field(180.0, gt=0, allow_inf_nan=False,
                                 description="seconds Deploy and Connect wait for the declared port")
    kubeconfig: Path | None = None
    context: str | None = None
    registry: str | None = None
    # Issue 9: the Pod Security Standards level manifests must meet (KubeVibe's own rules apply on top).
    policy: Literal["baseline", "restricted"] = "baseline"
    # `--push REGISTRY/PATH` (issue 17): where the final image goes with the user's own credentials.
    push: str | None = None
    slo: Path | None = Field(None, description="YAML file of service-level objectives checked under load (LOAD)")
    # Where `kubevibe experiment` (and bench) run their cells; not a setting of one run.
    executor: Literal["local", "ray"] = Field("local", description="local processes or a Ray cluster")
    ray_address: str | None = Field(None, description="Ray cluster address; none: a local Ray instance")
    # How the model is prompted (issue 16): one schema-constrained request per stage, or one chat conversation.
    style: Literal["structured", "conversational"] = "structured"
    # Acceptance tests (issue 12): a Tavern file, where it comes from, and the test writer.
    tests: Path | None = Field(None, description="Tavern file of acceptance tests ({base_url} is the service)")
    tests_source: Literal["user", "benchmark"] = "user"
    test_writer: bool | None = Field(None, description="write acceptance tests with an LLM before Generate; "
                                     "default: on, except for the embedded model")
    test_llm: str | None = Field(None, description="LLM spec of the test writer; default: the generator's")
    test_model: str | None = None
    # Machine settings read by the local infrastructure (issue 11): checked before a run starts, recorded with
    # their source. Code below the pipeline reads them from the environment with machine_setting() (a config-file
    # value is exported there, see export_machine_settings).
    registry_port: int = Field(5005, ge=1, le=65535, description="port of the loopback registry")
    base_policy: Literal["auto", "offline"] = "auto"
    debian_mirror: str | None = Field(None, pattern=r"^(https?|file)://\S+$", description="mirror for debootstrap")
    home: Path | None = Field(None, description="KubeVibe's data directory")
    ollama_host: str | None = Field(None, pattern=r"^(https?://)?[A-Za-z0-9.\-\[\]:]+(:\d{1,5})?/?$",
                                    description="Ollama's address for --llm auto/ollama")

    @field_validator("target")
    @classmethod
    def _registered_target(cls, value: str) -> str:
        """One of the registered providers (kubevibe.targets.register_target adds to TARGET_NAMES)."""
        if value not in TARGET_NAMES:
            names = [repr(name) for name in TARGET_NAMES]
            raise ValueError(", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0])
        return value


# Environment variable for each setting. The first six are the reference tool's.
ENV_VARS: dict[str, str] = {
    "model": "MODEL",
    "intent_method": "INTENT_METHOD",
    "ival_method": "IVAL_METHOD",
    "fix_from_zero": "FIXFZERO",
    "timeout": "TIMEOUT",
    "max_steps": "N",
    "llm": "KUBEVIBE_LLM",
    "max_fix_attempts": "KUBEVIBE_MAX_FIXES",
    "max_consecutive_failures": "KUBEVIBE_MAX_CONSECUTIVE_FAILURES",
    "max_judge_retries": "KUBEVIBE_MAX_JUDGE_RETRIES",
    "strategy": "KUBEVIBE_STRATEGY",
    "builder": "KUBEVIBE_BUILDER",
    "target": "KUBEVIBE_TARGET",
    "runs_dir": "KUBEVIBE_RUNS_DIR",
    "temperature": "KUBEVIBE_TEMPERATURE",
    "seed": "KUBEVIBE_SEED",
    "num_ctx": "KUBEVIBE_NUM_CTX",
    "max_tokens": "KUBEVIBE_MAX_TOKENS",
    "think": "KUBEVIBE_THINK",
    "llm_timeout": "KUBEVIBE_LLM_TIMEOUT",
    "k8s_version": "KUBEVIBE_K8S_VERSION",
    "allow_node_port": "KUBEVIBE_ALLOW_NODE_PORT",
    "stage_timeout": "KUBEVIBE_STAGE_TIMEOUT",
    "ready_timeout": "KUBEVIBE_READY_TIMEOUT",
    "kubeconfig": "KUBECONFIG",
    "context": "KUBEVIBE_CONTEXT",
    "registry": "KUBEVIBE_REGISTRY",
    "policy": "KUBEVIBE_POLICY",
    "push": "KUBEVIBE_PUSH",
    "slo": "KUBEVIBE_SLO",
    "executor": "KUBEVIBE_EXECUTOR",
    "ray_address": "RAY_ADDRESS",
    "style": "KUBEVIBE_STYLE",
    "tests": "KUBEVIBE_TESTS",
    "tests_source": "KUBEVIBE_TESTS_SOURCE",
    "test_writer": "KUBEVIBE_TEST_WRITER",
    "test_llm": "KUBEVIBE_TEST_LLM",
    "test_model": "KUBEVIBE_TEST_MODEL",
    "registry_port": "KUBEVIBE_REGISTRY_PORT",
    "base_policy": "KUBEVIBE_BASE_POLICY",
    "debian_mirror": "KUBEVIBE_DEBIAN_MIRROR",
    "home": "KUBEVIBE_HOME",
    "ollama_host": "OLLAMA_HOST",
}
# Settings that the infrastructure code reads from the process environment with machine_setting() (it also
# serves `setup`, `doctor` and `gc`, which have no run settings): a value from the config file is exported there
# for the run.
MACHINE_SETTINGS = ("registry_port", "base_policy", "debian_mirror", "home", "ollama_host")
# What machine_setting() says a bad value should be (the words the infrastructure code has always used).
_MACHINE_EXPECTED = {"registry_port": "a TCP port number (1-65535)", "base_policy": "auto or offline"}
DEBUG_ENV = "KUBEVIBE_DEBUG"
OPENAI_API_KEY_ENV = "OPENAI_API_KEY"
CONFIG_ENV = "KUBEVIBE_CONFIG"
DEFAULT_CONFIG = Path("kubevibe.toml")

_BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _from_env_text(name: str, text: str) -> Any:
    """Environment values are text; booleans accept 0/1 like the reference tool's FIXFZERO."""
    annotation = str(Settings.model_fields[name].annotation)
    if "bool" in annotation:
        word = text.strip().lower()
        if word in _BOOL_WORDS:
            return _BOOL_WORDS[word]
        raise SettingError(ENV_VARS[name], text, "0 or 1")
    if text.strip() == "" and "None" in annotation:
        return None
    return text


class ResolvedSettings(BaseModel):
    settings: Settings
    sources: dict[str, str]  # setting name -> "flag", "env:MODEL", "file:kubevibe.toml", "default"
    config_file: str | None = None


def load_config_file(path: Path | None, env: Mapping[str, str]) -> tuple[dict[str, Any], Path | None]:
    explicit = path or (Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else None)
    candidate = explicit or DEFAULT_CONFIG
    if not candidate.exists():
        if explicit:
            raise UsageError(f"Config file {explicit} does not exist.")
        return {}, None
    if candidate.is_dir():
        raise UsageError(f"Config file {candidate} is a directory, not a TOML file.")
    try:
        data = tomllib.loads(candidate.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"Config file {candidate} is not valid TOML: {exc}.") from None
    except OSError as exc:
        raise UsageError(f"Config file {candidate} cannot be read: {exc.strerror or exc}.") from None
    # Accept either top-level keys or a [kubevibe] table; keys may use - or _.
    table = data.get("kubevibe", data)
    out = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in Settings.model_fields:
            raise UsageError(f"Config file {candidate} has an unknown setting {key!r}.")
        out[name] = value
    return out, candidate


def resolve_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_path: Path | None = None,
) -> ResolvedSettings:
    """flags: only the flags the user actually gave (None values are ignored)."""
    env = os.environ if env is None else env
    file_values, file_path = load_config_file(config_path, env)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, text in env.items():
        if key in ENV_VARS.values() and _has_surrogates(text):
            raise UsageError(f"The environment variable {key} is not valid UTF-8 text.")
    for name in Settings.model_fields:
        if flags and flags.get(name) is not None:
            values[name], sources[name] = flags[name], "flag"
        elif name in ENV_VARS and env.get(ENV_VARS[name]) not in (None, ""):
            values[name], sources[name] = _from_env_text(name, env[ENV_VARS[name]]), f"env:{ENV_VARS[name]}"
        elif name in file_values:
            values[name], sources[name] = file_values[name], f"file:{file_path}"
        else:
            sources[name] = "default"
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "?"
        source = sources.get(name, "default")
        label = ENV_VARS.get(name, name) if source.startswith("env:") else name.replace("_", "-")
        expected = _expected(name, err)
        raise SettingError(label, values.get(name), expected) from None
    # A secret: the record says whether it was set, never its value.
    sources["openai_api_key"] = f"env:{OPENAI_API_KEY_ENV}" if env.get(OPENAI_API_KEY_ENV) else "unset"
    return ResolvedSettings(settings=settings, sources=sources, config_file=str(file_path) if file_path else None)


def resolve_named(names: tuple[str, ...], flags: Mapping[str, Any], env: Mapping[str, str] | None = None,
                  config_path: Path | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """Only the named settings (flag > env > file > default) with their sources: for commands such as
    `experiment` whose other settings come from elsewhere (the plan), so a caller's unrelated variables stay out."""
    resolved = resolve_settings(flags={n: flags.get(n) for n in names},
                                env={k: v for k, v in (os.environ if env is None else env).items()
                                     if k in {ENV_VARS[n] for n in names} | {CONFIG_ENV}},
                                config_path=config_path)
    return ({n: getattr(resolved.settings, n) for n in names}, {n: resolved.sources[n] for n in names})


def _has_surrogates(text: str) -> bool:
    """Python turns bytes that are not UTF-8 (in argv or the environment) into lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def export_machine_settings(resolved: ResolvedSettings, environ: dict[str, str] | None = None) -> None:
    """Make config-file values of MACHINE_SETTINGS visible to the infrastructure code, which reads the environment."""
    environ = os.environ if environ is None else environ  # type: ignore[assignment]
    for name in MACHINE_SETTINGS:
        value = getattr(resolved.settings, name)
        if resolved.sources.get(name, "").startswith("file:") and value is not None:
            environ[ENV_VARS[name]] = str(value)


def machine_setting(name: str, env: Mapping[str, str] | None = None) -> Any:
    """One of MACHINE_SETTINGS from the environment (where a run's config-file value was exported), checked like
    the run's setting; its default when unset or blank. base_policy is read case-insensitively; a path is expanded."""
    assert name in MACHINE_SETTINGS, name
    env = os.environ if env is None else env
    variable = ENV_VARS[name]
    text = env.get(variable, "").strip()
    if not text:
        return Settings.model_fields[name].default
    if name == "base_policy":
        text = text.lower()
    try:
        value = getattr(Settings(**{name: text}), name)
    except ValidationError as exc:
        raise SettingError(variable, text, _MACHINE_EXPECTED.get(name) or _expected(name, exc.errors()[0])) from None
    return value.expanduser() if isinstance(value, Path) else value


def debug_traceback(env: Mapping[str, str] | None = None) -> bool:
    """KUBEVIBE_DEBUG set to anything: an internal error shows its traceback instead of one line."""
    return bool((os.environ if env is None else env).get(DEBUG_ENV))


def openai_api_key(env: Mapping[str, str] | None = None) -> str | None:
    """OPENAI_API_KEY for OpenAI-compatible servers; None when unset (local servers need none)."""
    return (os.environ if env is None else env).get(OPENAI_API_KEY_ENV) or None


def _expected(name: str, err: dict) -> str:
    if name == "intent_method":
        return "one of " + ", ".join(INTENT_METHODS)
    if err.get("type") == "finite_number":
        return "a finite number of seconds" if "timeout" in name else "a finite number"
    if name == "registry_port":
        return "a TCP port number (1-65535)"
    if name == "debian_mirror":
        return "an http://, https:// or file:// URL"
    if name == "ollama_host":
        return "HOST, HOST:PORT or http(s)://HOST:PORT"
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        return str(ctx["expected"])
    return err.get("msg", "a valid value").removeprefix("Input should be ").removeprefix("Value error, ")
