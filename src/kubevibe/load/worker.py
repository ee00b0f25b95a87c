"""The load generator, run as `python -m kubevibe.load.worker JOB.json RESULT.json` in a process of its own.

Locust imports gevent and monkey-patches the whole process (sockets, threads, time), so it must never be
imported by the run process: the LOAD stage starts this module as a subprocess, hands it a job (kubevibe.load.plan
.LoadJob as JSON) and reads back one sample per request. Locust runs as a library: no web UI, no locustfile, a
local runner with one user per request per second of offered load, paced so that arrivals are evenly spaced,
stopped after the job's duration or its request budget, whichever comes first; users may finish the request they
are in for up to the request timeout.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from kubevibe.load.plan import LoadJob, is_loopback_url

MAX_SERVER_HEADERS = 5
MAX_ERROR_TEXTS = 10


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m kubevibe.load.worker JOB.json RESULT.json", file=sys.stderr)
        return 2
    job = LoadJob.model_validate_json(Path(argv[0]).read_text(encoding="utf-8"))
    if not is_loopback_url(job.base_url):  # a second guard: load goes to loopback only, whoever built the job
        print(f"refusing to send load to {job.base_url}: only 127.0.0.1 / ::1 / localhost", file=sys.stderr)
        return 2
    result = run_job(job)
    Path(argv[1]).write_text(json.dumps(result), encoding="utf-8")
    return 0


def run_job(job: LoadJob) -> dict[str, Any]:
    import gevent
    from locust import HttpUser, task
    from locust.env import Environment

    users = max(1, min(job.max_users, math.ceil(job.rps)))
    interval = 1.0 / job.rps  # between two requests of the whole load: arrivals are evenly spaced
    # [start offset s, response time ms, status (0: no answer), request index, "timeout"/"connection"/""]
    samples: list[list[Any]] = []
    servers: list[str] = []
    errors: dict[str, int] = {}
    started = time.monotonic()
    state = {"sent": 0, "users": 0, "t0": 0.0}
    calls = job.requests

    class ServiceUser(HttpUser):
        """User i sends the requests of slots i, i + users, i + 2 users, ... (slot k at t0 + k x interval), so the
        offered load is an even `rps` as long as an answer takes less than users x interval (one second); a slower
        service falls behind, which the achieved rate shows."""

        host = job.base_url

        def wait_time(self) -> float:
            self.slot += users
            return max(0.0, state["t0"] + self.slot * interval - time.monotonic())

        def on_start(self) -> None:
            self.client.trust_env = False  # no HTTP(S)_PROXY between us and the loopback port
            self.slot = state["users"]
            state["users"] += 1
            self.index = self.slot % len(calls)
            gevent.sleep(max(0.0, state["t0"] + self.slot * interval - time.monotonic()))

        @task
        def call(self) -> None:
            if state["sent"] >= job.max_requests or self.slot * interval >= job.duration_s:
                gevent.sleep(0.05)  # the budget or the window is used up: wait to be stopped
                return
            state["sent"] += 1
            index, self.index = self.index, (self.index + 1) % len(calls)
            req = calls[index]
            kwargs: dict[str, Any] = {"timeout": job.request_timeout_s, "name": str(index),
                                      "allow_redirects": False, "headers": req.headers or None}
            if req.body is not None:
                kwargs["json"] = req.body
            self.client.request(req.method, req.path, **kwargs)

    def on_request(request_type, name, response_time, response_length, response=None, exception=None,  # noqa: ARG001
                   start_time=None, **_kw) -> None:
        status = int(getattr(response, "status_code", 0) or 0)
        begin = (start_time - started_wall) if start_time else time.monotonic() - started - response_time / 1000
        kind = "" if status else ("timeout" if "timeout" in type(exception).__name__.lower() else "connection")
        samples.append([round(begin, 4), round(float(response_time), 3), status, int(name), kind])
        if status:
            server = (getattr(response, "headers", None) or {}).get("Server")
            if server and server not in servers and len(servers) < MAX_SERVER_HEADERS:
                servers.append(server)
        if exception is not None and not status:
            text = f"{type(exception).__name__}: {exception}"[:300]
            if text in errors or len(errors) < MAX_ERROR_TEXTS:
                errors[text] = errors.get(text, 0) + 1

    started_wall = time.time()
    env = Environment(user_classes=[ServiceUser], stop_timeout=job.request_timeout_s, catch_exceptions=True)
    env.events.request.add_listener(on_request)
    runner = env.create_local_runner()
    state["t0"] = time.monotonic() + 0.5  # the users start up first
    runner.start(user_count=users, spawn_rate=max(users, 100))
    stop_at = state["t0"] + job.duration_s
    while time.monotonic() < stop_at and state["sent"] < job.max_requests:
        gevent.sleep(0.05)
    load_end = time.monotonic() - state["t0"]
    runner.quit()  # users get stop_timeout to finish the request they are in
    runner.greenlet.join(timeout=job.request_timeout_s + 5)
    return {"samples": samples, "servers": servers, "errors": errors, "users": users,
            "load_s": round(load_end, 3), "total_s": round(time.monotonic() - started, 3),
            "locust_exceptions": [str(e.get("msg", e))[:300] for e in list(runner.exceptions.values())[:5]]}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
