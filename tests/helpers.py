"""Shared test helpers: a RunContext on a temporary run directory, and a known-good set of generated files.

Import from a test module with `from helpers import make_context, known_good_artifacts` (pytest puts the tests
directory on sys.path). Everything here is real: no fakes of tools or stages.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from kubevibe.pipeline.artifacts import (
    CODE,
    DOCKERFILE,
    MANIFEST,
    REQUIREMENTS,
    ArtifactSet,
)
from kubevibe.pipeline.context import RunContext, RunState
from kubevibe.pipeline.fsm import State
from kubevibe.record.rundir import RunDir
from kubevibe.settings import Settings

KNOWN_GOOD_PROMPT = "credit card validation microservice: POST /validate checks a number with the Luhn algorithm"
KNOWN_GOOD_IMAGE = "127.0.0.1:5005/kubevibe/credit-card:run-20261124t101500z-abc123"

KNOWN_GOOD_CODE = '''\
from flask import Flask, jsonify, request

app = Flask(__name__)


def luhn_valid(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) < 12 or len(digits) != len([c for c in number if not c.isspace() and c != "-"]):
        return False
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


@app.route("/health", methods=["GET"])
def health():
    return jsonify({"status": "ok"})


@app.route("/validate", methods=["POST"])
def validate():
    data = request.get_json(silent=True) or {}
    number = str(data.get("card_number", ""))
    if not number:
        return jsonify({"error": "card_number is required"}), 400
    return jsonify({"card_number": number, "valid": luhn_valid(number)})


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
'''

KNOWN_GOOD_DOCKERFILE = '''\
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY myapp.py .
EXPOSE 5000
CMD ["python", "myapp.py"]
'''

KNOWN_GOOD_MANIFEST = '''\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: credit-card
  labels:
    app: credit-card
spec:
  replicas: 1
  selector:
    matchLabels:
      app: credit-card
  template:
    metadata:
      labels:
        app: credit-card
    spec:
      containers:
        - name: app
          image: credit-card:latest
          ports:
            - containerPort: 5000
          env:
            - name: FLASK_ENV
              value: production
          readinessProbe:
            httpGet:
              path: /health
              port: 5000
            initialDelaySeconds: 2
            periodSeconds: 5
          resources:
            requests:
              cpu: 100m
              memory: 128Mi
            limits:
              cpu: 500m
              memory: 256Mi
---
apiVersion: v1
kind: Service
metadata:
  name: credit-card
  labels:
    app: credit-card
spec:
  type: ClusterIP
  selector:
    app: credit-card
  ports:
    - name: http
      port: 80
      targetPort: 5000
'''

KNOWN_GOOD_REQUIREMENTS = "flask==3.0.3\n"

KNOWN_GOOD_INTENT: dict[str, Any] = {
    "request": KNOWN_GOOD_PROMPT,
    "method": "json-with-required",
    "text": KNOWN_GOOD_PROMPT,
    "spec": {
        "name": "credit-card",
        "description": "Validates credit card numbers with the Luhn algorithm.",
        "port": 80,
        "target_port": 5000,
        "replicas": 1,
        "endpoints": [
            {"method": "POST", "path": "/validate", "description": "check a card number"},
            {"method": "GET", "path": "/health", "description": "liveness"},
        ],
    },
}


def known_good_artifacts(**changes: str) -> ArtifactSet:
    """A small Flask credit-card (Luhn) validator on port 5000 that passes Validate. Keyword arguments replace
    files by name, e.g. `known_good_artifacts(**{"vibe.yaml": text})`."""
    files = {
        CODE: KNOWN_GOOD_CODE,
        DOCKERFILE: KNOWN_GOOD_DOCKERFILE,
        MANIFEST: KNOWN_GOOD_MANIFEST,
        REQUIREMENTS: KNOWN_GOOD_REQUIREMENTS,
    }
    files.update(changes)
    return ArtifactSet(files=files)


def known_good_docs() -> list[dict]:
    """The known-good manifest as loaded objects (a fresh copy each call, free to mutate)."""
    return [d for d in yaml.safe_load_all(KNOWN_GOOD_MANIFEST) if d]


def dump_docs(docs: list[dict]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def make_context(
    tmp_path: Path,
    artifacts: ArtifactSet | None = None,
    *,
    state: RunState | None = None,
    settings_overrides: dict[str, Any] | None = None,
    stage: State | None = None,
    step: int = 1,
    llm: Any = None,
    timeout: float = 600.0,
) -> RunContext:
    """A RunContext on a fresh run directory under tmp_path (runs_dir is tmp_path/"runs").

    stage: the stage being run (needed for ctx.stage_dir / ctx.log_file); state: defaults to a RunState with the
    known-good prompt and no image. llm: None unless the stage under test calls the model.
    """
    overrides = {"runs_dir": tmp_path / "runs", **(settings_overrides or {})}
    settings = Settings(**overrides)
    rundir = RunDir.create(settings.runs_dir, "test-model")
    ctx = RunContext(
        settings=settings,
        rundir=rundir,
        llm=llm,
        state=state or RunState(prompt=KNOWN_GOOD_PROMPT),
        artifacts=artifacts if artifacts is not None else known_good_artifacts(),
        run_id=rundir.run_id,
        deadline=time.monotonic() + timeout,
    )
    ctx.step = step
    ctx.stage = stage
    return ctx


def built_state(image: str = KNOWN_GOOD_IMAGE, **fields: Any) -> RunState:
    """A RunState as after a successful Build of the known-good files (with the intent spec)."""
    return RunState(prompt=KNOWN_GOOD_PROMPT, intent=KNOWN_GOOD_INTENT, image=image, **fields)


def load_trusted_app(code: str, tmp_path: Path, name: str = "trusted"):
    """Import a Flask myapp.py in-process, as a module of its own (state is per module), and return its `app`.

    Only for KubeVibe's own code (the bank's references, or skeletons filled with their bodies): generated code
    never runs on the host."""
    import importlib.util
    import sys

    path = tmp_path / f"{name}_myapp.py"
    path.write_text(code, encoding="utf-8")
    module_name = f"kubevibe_trusted_{name}_{id(path)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(module_name, None)
    return module.app
