"""Realistic answers through the real `kubevibe run`, podman and registry: the local engine must behave like the
official images and a real cluster, with no false passes and no false failures.

Good answers of the shapes capable models and real projects give (FastAPI/uvicorn on 8000, multi-stage builds
with `pip install --prefix` or copied site-packages, non-root users, probes, ConfigMaps, a namespace, a read-only
root file system, gunicorn, a slow start under a CPU limit, python:3.13, an alpine tag repaired by one fix) reach
Success; broken ones (gunicorn missing from requirements.txt) are caught at the right stage with evidence that
names the cause. Builds are grouped: six runs, seven builds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine_helpers import require_engine
from test_e2e_local import Runs, fix_answer, path_of

pytestmark = pytest.mark.engine

LUHN = '''
def luhn(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) < 12 or len(digits) != len(number):
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0
'''

FASTAPI_MAIN = '''import os

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI(title=os.environ.get("APP_TITLE", "credit card"))


class Card(BaseModel):
    card_number: str
''' + LUHN + '''

@app.post("/validate")
def validate(card: Card) -> dict:
    return {"valid": luhn(card.card_number)}


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}
'''

FLASK_APP = '''import os
import time

from flask import Flask, jsonify, request

time.sleep(float(os.environ.get("START_DELAY_S", "0")))  # a slow start (model loading, migrations...)
app = Flask(__name__)
''' + LUHN + '''

@app.post("/validate")
def validate():
    data = request.get_json(silent=True) or {}
    return jsonify(valid=luhn(str(data.get("card_number", ""))))


@app.get("/health")
def health():
    return jsonify(status="ok")


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "5000")))
'''

MULTI_STAGE_PREFIX = '''\
FROM python:3.11-slim AS builder
WORKDIR /build
COPY requirements.txt .
RUN pip install --no-cache-dir --prefix=/install -r requirements.txt

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=builder /install /usr/local
RUN useradd --create-home --uid 10001 appuser
WORKDIR /app
COPY main.py .
USER 10001
EXPOSE 8000
CMD ["uvicorn", "main:app", "--host", "0.0.0.0", "--port", "8000"]
'''

MANIFEST_8000 = '''\
apiVersion: v1
kind: ConfigMap
metadata:
  name: credit-card-config
  namespace: default
data:
  APP_TITLE: Credit card validator
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: credit-card
  namespace: default
  labels:
    app: credit-card
spec:
  replicas: 2
  selector:
    matchLabels:
      app: credit-card
  template:
    metadata:
      labels:
        app: credit-card
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
      containers:
        - name: api
          image: credit-card:1.0.0
          ports:
            - name: http
              containerPort: 8000
          envFrom:
            - configMapRef:
                name: credit-card-config
          livenessProbe:
            httpGet:
              path: /health
              port: http
            initialDelaySeconds: 5
          readinessProbe:
            httpGet:
              path: /health
              port: http
          resources:
            requests:
              cpu: 100m
              memory: 128Mi
            limits:
              cpu: 500m
              memory: 256Mi
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: ["ALL"]
---
apiVersion: v1
kind: Service
metadata:
  name: credit-card
  namespace: default
spec:
  selector:
    app: credit-card
  ports:
    - name: http
      port: 80
      targetPort: http
'''


def spec(target_port: int) -> str:
    return json.dumps({
        "name": "credit-card", "description": "Validates card numbers with the Luhn algorithm.",
        "port": 80, "target_port": target_port,
        "endpoints": [{"method": "POST", "path": "/validate"}, {"method": "GET", "path": "/health"}],
        "test_cases": [
            {"name": "valid", "method": "POST", "path": "/validate", "body": {"card_number": "4539578763621486"},
             "expected_status": 200, "expected_json": {"valid": True}},
            {"name": "invalid", "method": "POST", "path": "/validate", "body": {"card_number": "4539578763621487"},
             "expected_status": 200, "expected_json": {"valid": False}},
        ],
    })  # fmt: skip


def answer(code: str, dockerfile: str, manifest: str, requirements: str) -> str:
    return json.dumps({"pythonfilecontent": code, "containerfilecontent": dockerfile, "yamlfilecontent": manifest,
                       "requirements": requirements})  # fmt: skip


def manifest_5000(extra_container: str = "", extra_pod: str = "") -> str:
    return f'''\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: credit-card
spec:
  selector:
    matchLabels:
      app: credit-card
  template:
    metadata:
      labels:
        app: credit-card
    spec:
{extra_pod}      containers:
        - name: app
          image: credit-card
          ports:
            - containerPort: 5000
{extra_container}---
apiVersion: v1
kind: Service
metadata:
  name: credit-card
spec:
  selector:
    app: credit-card
  ports:
    - port: 80
      targetPort: 5000
'''


@pytest.fixture(scope="module", autouse=True)
def engine():
    return require_engine()


TESTS = Path(__file__).parent / "fixtures" / "card-valid.tavern.yaml"


class RunsWithTests(Runs):
    """Every run with the user's acceptance tests: a correct service must end in a verified SUCCESS."""

    def run(self, answers, *args):
        return super().run(answers, "--tests", str(TESTS), *args)


@pytest.fixture
def runs(tmp_path):
    made = RunsWithTests(tmp_path)
    yield made
    made.cleanup()


def result_of(run, stage: str) -> dict:
    return json.loads(sorted(run.glob(f"steps/*-{stage}/result.json"))[-1].read_text())


def test_fastapi_multi_stage_non_root_with_configmap_namespace_and_probes_succeeds(runs):
    code, summary, run = runs.run([("intent", spec(8000)), ("generate", answer(
        FASTAPI_MAIN, MULTI_STAGE_PREFIX, MANIFEST_8000, "fastapi==0.115.6\nuvicorn==0.34.0\n"))])
    assert code == 0, summary
    assert [s for s, _, _ in path_of(summary)] == ["INTENT", "GENERATE", "BUILD", "VALIDATE", "DEPLOY", "CONNECT",
                                                   "ACCEPT", "LOAD", "CHART"]  # no fix round: the layout and the namespace were fine
    assert summary["verified"]["tests_passed"] == 2
    record = json.loads((run / "run.json").read_text())
    assert record["service_file"] == "main.py"  # what `COPY main.py .` and `uvicorn main:app` expect
    kinds = [s["kind"] for s in record["stand_ins"]]
    assert "base-image" in kinds and "dropped-field" in kinds
    details = " ".join(s["detail"] for s in record["stand_ins"])
    assert "FROM python:3.11-slim -> localhost/kubevibe/python-std:3.11-slim-bookworm" in details
    assert "metadata.namespace 'default' dropped" in details
    assert record["settings"]["ready_timeout"] == 180.0 and record["sources"]["ready_timeout"] == "default"


def test_gunicorn_python_3_12_full_tag_copy_dot_and_copied_site_packages_succeeds(runs):
    # 3.12 maps to the 3.11 stand-in, whose /usr/local/lib/python3.12 points to its own site-packages.
    dockerfile = '''\
FROM python:3.12 AS deps
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt

FROM python:3.12-slim
COPY --from=deps /usr/local/lib/python3.12/site-packages /usr/local/lib/python3.12/site-packages
COPY --from=deps /usr/local/bin/gunicorn /usr/local/bin/gunicorn
RUN adduser --disabled-password --gecos '' web
WORKDIR /srv
COPY . .
USER web
EXPOSE 5000
CMD ["gunicorn", "--bind", "0.0.0.0:5000", "--workers", "2", "app:app"]
'''
    tmp = "          volumeMounts:\n            - name: tmp\n              mountPath: /tmp\n" \
          "          securityContext:\n            readOnlyRootFilesystem: true\n"
    pod = "      volumes:\n        - name: tmp\n          emptyDir: {}\n"
    code, summary, run = runs.run([("intent", spec(5000)), ("generate", answer(
        FLASK_APP, dockerfile, manifest_5000(tmp, pod), "flask==3.0.3\ngunicorn==23.0.0\n"))])
    assert code == 0, summary
    record = json.loads((run / "run.json").read_text())
    assert record["service_file"] == "app.py"
    assert any("full (non-slim) image" in s["detail"] for s in record["stand_ins"])
    assert any("Python 3.12 requested, the nearest local stand-in has Python 3.11" in s["detail"]
               for s in record["stand_ins"])


def test_missing_gunicorn_in_requirements_fails_at_deploy_not_a_false_pass(runs):
    dockerfile = '''\
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY app.py .
EXPOSE 5000
CMD ["gunicorn", "-b", "0.0.0.0:5000", "app:app"]
'''
    code, summary, run = runs.run([("intent", spec(5000)), ("generate", answer(
        FLASK_APP, dockerfile, manifest_5000(), "flask==3.0.3\n"))], "--max-fixes", "0")
    assert code == 1 and summary["outcome"] == "fail", summary
    failed = [(t["from"], t["reason"]) for t in summary["transitions"] if t["result"] == "failed"]
    assert failed[0][0] == "DEPLOY", failed  # built fine (as on the real image); it cannot start
    evidence = json.dumps(result_of(run, "deploy")["evidence"])
    assert "gunicorn" in failed[0][1] + evidence
    assert not summary["verified"].get("reachable")


def test_alpine_tag_is_repaired_by_one_fix_that_the_mapping_note_explains(runs):
    alpine = '''\
FROM python:3.11-alpine
RUN apk add --no-cache tini
RUN adduser -D app
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY app.py .
USER app
EXPOSE 5000
CMD ["python", "app.py"]
'''
    slim = alpine.replace("python:3.11-alpine", "python:3.11-slim").replace("RUN apk add --no-cache tini\n", "") \
        .replace("RUN adduser -D app", "RUN useradd --create-home app")
    code, summary, run = runs.run([("intent", spec(5000)),
                                   ("generate", answer(FLASK_APP, alpine, manifest_5000(), "flask==3.0.3\n")),
                                   ("fix", fix_answer("Dockerfile", slim))], "--max-fixes", "1")
    assert code == 0, summary
    steps = path_of(summary)
    assert steps[2][:2] == ("BUILD", "FIX") and steps[3] == ("FIX", "BUILD", "resume-build")
    fix_prompt = [json.loads(line) for line in (run / "llm.jsonl").read_text().splitlines()][-1]["request"]["prompt"]
    assert "the image here is Debian, not Alpine: `apk` is not available" in fix_prompt
    assert "apt-get" in fix_prompt and "useradd" in fix_prompt


def test_slow_start_under_a_cpu_limit_on_python_3_13_is_waited_for_and_reported(runs):
    dockerfile = '''\
FROM python:3.13-slim
ENV START_DELAY_S=12
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY server.py .
CMD ["python", "server.py"]
'''
    limits = "          resources:\n            limits:\n              cpu: 100m\n"
    code, summary, run = runs.run([("intent", spec(5000)), ("generate", answer(
        FLASK_APP, dockerfile, manifest_5000(limits), "flask==3.0.3\n"))])
    assert code == 0, summary
    deploy = result_of(run, "deploy")
    assert deploy["metrics"]["ready_s"] >= 10
    assert any("slow start" in e["title"] and "100m" in e["title"] for e in deploy["evidence"])
    record = json.loads((run / "run.json").read_text())
    assert record["service_file"] == "server.py"
    assert any("python-std:3.13-slim-trixie" in s["detail"] for s in record["stand_ins"])


def test_a_start_slower_than_the_ready_timeout_fails_deploy_naming_the_limit(runs, monkeypatch):
    monkeypatch.setenv("KUBEVIBE_READY_TIMEOUT", "6")
    dockerfile = '''\
FROM python:3.11-slim
ENV START_DELAY_S=60
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY app.py .
CMD ["python", "app.py"]
'''
    limits = "          resources:\n            limits:\n              cpu: 30m\n"
    code, summary, run = runs.run([("intent", spec(5000)), ("generate", answer(
        FLASK_APP, dockerfile, manifest_5000(limits), "flask==3.0.3\n"))], "--max-fixes", "0")
    assert code == 1
    deploy = next(t for t in summary["transitions"] if t["from"] == "DEPLOY")
    assert deploy["result"] == "failed"
    assert "not ready after 6s (KUBEVIBE_READY_TIMEOUT)" in deploy["reason"]
    assert "does not listen on port 5000 yet" in deploy["reason"] and "30m" in deploy["reason"]
    record = json.loads((run / "run.json").read_text())
    assert record["sources"]["ready_timeout"] == "env:KUBEVIBE_READY_TIMEOUT"
