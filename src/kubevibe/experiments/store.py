"""The results database: one SQLite file per experiment (experiment.sqlite).

Tables: `runs` (one row per cell of the matrix, i.e. per run), `stage_executions` (one per stage execution),
`llm_calls` (one per LLM call), `revisions` (one per artifact revision, with a content hash), and `meta`.
The schema is created and upgraded by numbered migrations, run on open; `schema_migrations` says which ran.

Everything in the tables is derived from run directories (`ingest_run`), so a database can always be rebuilt
from the runs it points to. Only the experiment process writes; readers (report, compare) open it read-only.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kubevibe.errors import UsageError
from kubevibe.experiments.metrics import FINISHED, executions_from_events, performance_fixes, repair_episodes, run_metrics
from kubevibe.record.verdict import functionally_verified, make_verdict
from kubevibe.record.rundir import RunDir
from kubevibe.record.schema import LLMCallRecord, RunRecord

DB_NAME = "experiment.sqlite"
TABLES = ("runs", "stage_executions", "llm_calls", "revisions")

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "initial schema", """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE runs (
            cell_key TEXT PRIMARY KEY,
            model_label TEXT NOT NULL,
            llm TEXT,
            model TEXT,
            intent_method TEXT,
            strategy TEXT,
            prompt_index INTEGER,
            prompt TEXT,
            repetition INTEGER,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            run_id TEXT,
            run_dir TEXT,
            outcome TEXT,
            final_state TEXT,
            reason TEXT,
            resolved_strategy TEXT,
            llm_backend TEXT,
            llm_model TEXT,
            steps INTEGER,
            fix_attempts INTEGER,
            elapsed_s REAL,
            built INTEGER, validated INTEGER, deployed INTEGER, reachable INTEGER, charted INTEGER,
            tests_passed INTEGER, tests_total INTEGER,
            image TEXT,
            chart TEXT,
            depth INTEGER,
            fix_iterations INTEGER,
            first_attempt_success INTEGER,
            failed_executions INTEGER,
            repaired INTEGER,
            refailed INTEGER,
            revisions INTEGER,
            oscillations INTEGER,
            llm_calls INTEGER,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            llm_s REAL,
            started TEXT,
            finished TEXT,
            exit_code INTEGER,
            resumed INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE stage_executions (
            run_id TEXT NOT NULL,
            cell_key TEXT NOT NULL,
            step INTEGER NOT NULL,
            stage TEXT NOT NULL,
            result TEXT NOT NULL,
            to_state TEXT,
            duration_s REAL,
            reason TEXT,
            revision INTEGER,
            evidence_count INTEGER,
            time TEXT,
            PRIMARY KEY (run_id, step)
        );
        CREATE TABLE llm_calls (
            run_id TEXT NOT NULL,
            cell_key TEXT NOT NULL,
            seq INTEGER NOT NULL,
            step INTEGER,
            stage TEXT,
            purpose TEXT,
            backend TEXT,
            model TEXT,
            ok INTEGER,
            error TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            duration_s REAL,
            finish_reason TEXT,
            time TEXT,
            PRIMARY KEY (run_id, seq)
        );
        CREATE TABLE revisions (
            run_id TEXT NOT NULL,
            cell_key TEXT NOT NULL,
            rev INTEGER NOT NULL,
            hash TEXT NOT NULL,
            files TEXT,
            step INTEGER,
            PRIMARY KEY (run_id, rev)
        );
    """),
    (2, "indexes for per-cell and per-group queries", """
        CREATE INDEX stage_executions_cell ON stage_executions (cell_key);
        CREATE INDEX llm_calls_cell ON llm_calls (cell_key);
        CREATE INDEX revisions_cell ON revisions (cell_key);
        CREATE INDEX runs_group ON runs (model_label, intent_method, strategy, status);
    """),
    (3, "objectives under load (LOAD stage)", """
        ALTER TABLE runs ADD COLUMN slo_stated INTEGER;
        ALTER TABLE runs ADD COLUMN slo_met INTEGER;
        ALTER TABLE runs ADD COLUMN load_p95_ms REAL;
        ALTER TABLE runs ADD COLUMN load_achieved_rps REAL;
        ALTER TABLE runs ADD COLUMN load_error_rate REAL;
        ALTER TABLE runs ADD COLUMN load_peak_memory_mib REAL;
        ALTER TABLE runs ADD COLUMN performance_fixes INTEGER;
    """),
    # Issue 16: the prompting style is a dimension of the matrix; runs made before it were structured.
    (4, "prompting style of each run", """
        ALTER TABLE runs ADD COLUMN style TEXT NOT NULL DEFAULT 'structured';
        CREATE INDEX runs_style_group ON runs (model_label, intent_method, strategy, style, status);
    """),
    (5, "verified success: the verdict, acceptance tests and runtime success (outcome `unverified`)", """
        ALTER TABLE runs ADD COLUMN verdict TEXT;
        ALTER TABLE runs ADD COLUMN accept_source TEXT;
        ALTER TABLE runs ADD COLUMN accept_passed INTEGER;
        ALTER TABLE runs ADD COLUMN accept_total INTEGER;
        ALTER TABLE runs ADD COLUMN runtime_success INTEGER;
        ALTER TABLE runs ADD COLUMN functional_success INTEGER;
    """),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def verdict_columns(run: RunRecord) -> dict[str, Any]:
    """The verdict of a run.json as columns (runs recorded before verdicts existed get it from `verified`)."""
    verdict = run.verdict or make_verdict(run.verified or {})
    accepted = verdict.get("accepted") or {}
    acceptance = run.acceptance or {}
    return {"verdict": json.dumps(verdict, sort_keys=True),
            "accept_source": accepted.get("source") or acceptance.get("source"),
            "accept_passed": accepted.get("passed"), "accept_total": accepted.get("total"),
            # runtime success: the final files deployed and answered, whatever the tests said
            "runtime_success": int(bool(verdict.get("deployed") and verdict.get("reachable"))),
            "functional_success": int(run.outcome == "success" and functionally_verified(verdict))}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Store:
    def __init__(self, path: Path | str, base_dir: Path | None = None, readonly: bool = False):
        """path: the database file (or ":memory:"); base_dir: run_dir columns are stored relative to it."""
        self.path = path
        self.base_dir = Path(base_dir) if base_dir else (Path(path).parent if str(path) != ":memory:" else None)
        if readonly:
            if not Path(path).is_file():
                raise UsageError(f"{path} does not exist.")
            self.db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
        else:
            self.db = sqlite3.connect(str(path))
        self.db.row_factory = sqlite3.Row
        if not readonly:
            self.db.execute("PRAGMA journal_mode=WAL" if str(path) != ":memory:" else "PRAGMA journal_mode=MEMORY")
            self.migrate()
        elif self.schema_version() > SCHEMA_VERSION:
            raise UsageError(f"{path} was written by a newer KubeVibe (schema {self.schema_version()}).")

    # -- schema ---------------------------------------------------------------------------------------
    def schema_version(self) -> int:
        exists = self.db.execute("SELECT 1 FROM sqlite_master WHERE name='schema_migrations'").fetchone()
        if not exists:
            return 0
        return self.db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]

    def migrate(self) -> list[int]:
        """Run the migrations this database has not had yet, each in its own transaction. Returns them."""
        self.db.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)")
        self.db.commit()
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise UsageError(f"{self.path} was written by a newer KubeVibe (schema {current}, this one knows "
                             f"{SCHEMA_VERSION}).")
        ran = []
        for version, name, sql in MIGRATIONS:
            if version <= current:
                continue
            try:
                self.db.execute("BEGIN")
                for statement in _statements(sql):
                    self.db.execute(statement)
                self.db.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, _now()))
                self.db.execute("COMMIT")
            except Exception:
                self.db.execute("ROLLBACK")
                raise
            ran.append(version)
        return ran

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- meta -----------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.db:
            self.db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                            (key, value))

    # -- cells ----------------------------------------------------------------------------------------
    def sync_cells(self, cells: Iterable[Any]) -> int:
        """Insert a pending row for every cell not in the table yet. Returns how many were new."""
        before = self.db.total_changes
        with self.db:
            for cell in cells:
                row = cell.row()
                cols = ", ".join(row)
                self.db.execute(f"INSERT OR IGNORE INTO runs ({cols}) VALUES ({', '.join('?' * len(row))})",
                                tuple(row.values()))
        return self.db.total_changes - before

    def update_run(self, cell_key: str, **values: Any) -> None:
        if not values:
            return
        sets = ", ".join(f"{k}=?" for k in values)
        with self.db:
            self.db.execute(f"UPDATE runs SET {sets} WHERE cell_key=?", (*values.values(), cell_key))

    def run_row(self, cell_key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM runs WHERE cell_key=?", (cell_key,)).fetchone()
        return dict(row) if row else None

    # -- queries --------------------------------------------------------------------------------------
    def runs(self, statuses: Sequence[str] | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM runs"
        args: tuple = ()
        if statuses:
            sql += f" WHERE status IN ({', '.join('?' * len(statuses))})"
            args = tuple(statuses)
        sql += " ORDER BY model_label, intent_method, strategy, style, prompt_index, repetition"
        return [dict(r) for r in self.db.execute(sql, args)]

    def table(self, name: str) -> list[dict[str, Any]]:
        if name not in TABLES:
            raise ValueError(name)
        order = {"runs": "model_label, intent_method, strategy, style, prompt_index, repetition",
                 "stage_executions": "run_id, step", "llm_calls": "run_id, seq", "revisions": "run_id, rev"}[name]
        return [dict(r) for r in self.db.execute(f"SELECT * FROM {name} ORDER BY {order}")]

    def status_counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status")}

    # -- ingestion ------------------------------------------------------------------------------------
    def ingest_run(self, run_dir: Path, cell: Any | None = None, **extra: Any) -> dict[str, Any]:
        """Read a run directory into rows (replacing what the cell had before). `cell`: its RunSpec; without
        one (a run made outside an experiment) the identity comes from run.json."""
        rundir = RunDir.open(run_dir)
        run = rundir.read_run()
        events = rundir.read_events()
        calls = rundir.read_llm_calls()
        run_id = run.run_id or rundir.run_id
        identity = cell.row() if cell is not None else _identity_from_run(run, run_id)
        key = identity["cell_key"]

        executions = executions_from_events(events)
        for ex in executions:
            ex["evidence_count"] = _evidence_count(rundir, ex["step"], ex["stage"])
        revisions = revision_rows(rundir)
        revision_steps = {ex["revision"]: ex["step"] for ex in executions if ex.get("revision") is not None}
        outcome = run.outcome
        status = {"running": "interrupted"}.get(outcome, outcome) or "interrupted"
        per_run = run_metrics(status, executions, [r["hash"] for r in revisions])
        counters = run.counters or {}
        verified = run.verified or {}
        llm = run.llm or {}
        call_rows = [llm_call_row(i, c) for i, c in enumerate(calls)]
        row = {
            **identity,
            "status": status,
            "run_id": run_id,
            "run_dir": self._relative(rundir.path),
            "outcome": outcome,
            "final_state": run.final_state,
            "reason": run.reason,
            "resolved_strategy": run.strategy,
            "llm_backend": llm.get("backend"),
            "llm_model": llm.get("model"),
            "steps": counters.get("steps", len(executions)),
            "fix_attempts": counters.get("fix_attempts"),
            "elapsed_s": counters.get("elapsed_s"),
            **{k: _bool(verified.get(k)) for k in ("built", "validated", "deployed", "reachable", "charted")},
            "tests_passed": verified.get("tests_passed"),
            "tests_total": verified.get("tests_total"),
            **verdict_columns(run),
            "image": run.image,
            "chart": run.chart,
            **per_run,
            "llm_calls": len(call_rows),
            "prompt_tokens": sum(c["prompt_tokens"] or 0 for c in call_rows),
            "completion_tokens": sum(c["completion_tokens"] or 0 for c in call_rows),
            "llm_s": round(sum(c["duration_s"] or 0.0 for c in call_rows), 3),
            "started": run.created,
            "finished": run.finished if status in FINISHED else None,
            "resumed": len(run.resumed or []),
            **load_columns(run, executions),
            **extra,
        }
        with self.db:
            old = self.db.execute("SELECT run_id FROM runs WHERE cell_key=?", (key,)).fetchone()
            for rid in {run_id, old[0] if old else None} - {None}:
                for table in ("stage_executions", "llm_calls", "revisions"):
                    self.db.execute(f"DELETE FROM {table} WHERE run_id=?", (rid,))
            cols = ", ".join(row)
            updates = ", ".join(f"{c}=excluded.{c}" for c in row if c != "cell_key")
            self.db.execute(f"INSERT INTO runs ({cols}) VALUES ({', '.join('?' * len(row))}) "
                            f"ON CONFLICT(cell_key) DO UPDATE SET {updates}", tuple(row.values()))
            self.db.executemany(
                "INSERT OR REPLACE INTO stage_executions VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(run_id, key, e["step"], e["stage"], e["result"], e["to_state"], e["duration_s"], e["reason"],
                  e["revision"], e["evidence_count"], e["time"]) for e in executions])
            self.db.executemany(
                "INSERT OR REPLACE INTO llm_calls VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(run_id, key, c["seq"], c["step"], c["stage"], c["purpose"], c["backend"], c["model"], c["ok"],
                  c["error"], c["prompt_tokens"], c["completion_tokens"], c["duration_s"], c["finish_reason"],
                  c["time"]) for c in call_rows])
            self.db.executemany(
                "INSERT OR REPLACE INTO revisions VALUES (?,?,?,?,?,?)",
                [(run_id, key, r["rev"], r["hash"], r["files"], revision_steps.get(r["rev"])) for r in revisions])
        return row

    def ingest_directory(self, root: Path) -> int:
        """Ingest every run directory under `root` (runs made outside an experiment). Returns how many."""
        found = sorted({p.parent for p in Path(root).rglob("run.json")}, key=lambda p: p.name)
        n = 0
        for path in found:
            try:
                self.ingest_run(path)
            except (UsageError, ValueError, KeyError):
                continue
            n += 1
        self._number_loose_runs()
        return n

    def _number_loose_runs(self) -> None:
        """Prompt indexes and repetition numbers for runs ingested without a plan, in order of their run ids."""
        rows = self.db.execute("SELECT cell_key, model_label, intent_method, strategy, style, prompt FROM runs "
                               "WHERE cell_key LIKE 'run:%' ORDER BY run_id").fetchall()
        prompts: dict[str, int] = {}
        reps: dict[tuple, int] = {}
        with self.db:
            for r in rows:
                p_index = prompts.setdefault(r["prompt"], len(prompts))
                group = (r["model_label"], r["intent_method"], r["strategy"], r["style"], r["prompt"])
                reps[group] = reps.get(group, -1) + 1
                self.db.execute("UPDATE runs SET prompt_index=?, repetition=? WHERE cell_key=?",
                                (p_index, reps[group], r["cell_key"]))

    def _relative(self, path: Path) -> str:
        path = Path(path).resolve()
        if self.base_dir is not None:
            try:
                return str(path.relative_to(self.base_dir.resolve()))
            except ValueError:
                pass
        return str(path)

    def resolve_run_dir(self, run_dir: str | None) -> Path | None:
        if not run_dir:
            return None
        path = Path(run_dir)
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return path

    # -- export ---------------------------------------------------------------------------------------
    def export_csv(self, out_dir: Path) -> list[Path]:
        """Each table as a CSV file (header row, UTF-8). Returns the files written."""
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in TABLES:
            cursor = self.db.execute(f"SELECT * FROM {name}")
            path = out_dir / f"{name}.csv"
            with path.open("w", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow([d[0] for d in cursor.description])
                writer.writerows(cursor)
            written.append(path)
        return written


# -- row builders (pure given a run directory) ----------------------------------------------------------------
def revision_hash(directory: Path) -> tuple[str, list[str]]:
    """A hash of a revision's files (names and contents), and the file names."""
    digest = hashlib.sha256()
    names = sorted(p.name for p in directory.iterdir() if p.is_file())
    for name in names:
        data = (directory / name).read_bytes()
        digest.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return digest.hexdigest(), names


def revision_rows(rundir: RunDir) -> list[dict[str, Any]]:
    rows = []
    for rev in rundir.revisions():
        h, names = revision_hash(rundir.revision_dir(rev))
        rows.append({"rev": rev, "hash": h, "files": ",".join(names)})
    return rows


def llm_call_row(seq: int, record: LLMCallRecord) -> dict[str, Any]:
    response = record.response or {}
    duration = response.get("duration_s")
    if duration is None:
        duration = record.duration_s
    return {
        "seq": seq,
        "step": record.step,
        "stage": record.stage,
        "purpose": record.purpose,
        "backend": record.backend,
        "model": response.get("model") or record.model,
        "ok": _bool(record.ok),
        "error": record.error,
        "prompt_tokens": response.get("prompt_tokens"),
        "completion_tokens": response.get("completion_tokens"),
        "duration_s": duration,
        "finish_reason": response.get("finish_reason"),
        "time": record.time,
    }


def _identity_from_run(run: RunRecord, run_id: str) -> dict[str, Any]:
    settings = run.settings or {}
    llm = run.llm or {}
    return {"cell_key": f"run:{run_id}", "model_label": llm.get("model") or settings.get("model") or "?",
            "llm": settings.get("llm") or llm.get("spec"), "model": llm.get("model"),
            "intent_method": settings.get("intent_method"), "strategy": settings.get("strategy"),
            "style": run.style or settings.get("style") or "structured",
            "prompt_index": None, "prompt": run.prompt, "repetition": None}


def load_columns(run: RunRecord, executions: list[dict[str, Any]]) -> dict[str, Any]:
    """The LOAD stage's figures of a run: whether objectives were stated and met, and the fixes spent on them."""
    slo = (run.verdict or {}).get("slo")
    load = run.load or {}
    return {
        "slo_stated": int(slo is not None),
        "slo_met": None if slo is None else int(bool(slo.get("met"))),
        "load_p95_ms": load.get("p95_ms"),
        "load_achieved_rps": load.get("achieved_rps"),
        "load_error_rate": load.get("error_rate"),
        "load_peak_memory_mib": load.get("peak_memory_mib"),
        "performance_fixes": performance_fixes(executions),
    }


def _evidence_count(rundir: RunDir, step: int, stage: str) -> int | None:
    path = rundir.step_dir(step, stage) / "result.json"
    try:
        return len(json.loads(path.read_text(encoding="utf-8")).get("evidence") or [])
    except (OSError, ValueError, AttributeError):
        return None


def _bool(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def _statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]


def open_results(path: Path) -> Store:
    """The results of an experiment directory (its experiment.sqlite, read-only), or of a directory of plain
    run directories (ingested into an in-memory database)."""
    path = Path(path)
    if (path / DB_NAME).is_file():
        return Store(path / DB_NAME, base_dir=path, readonly=True)
    if path.is_file() and path.suffix == ".sqlite":
        return Store(path, base_dir=path.parent, readonly=True)
    if path.is_dir() and any(path.rglob("run.json")):
        store = Store(":memory:", base_dir=path)
        store.ingest_directory(path)
        return store
    raise UsageError(f"{path} is neither an experiment directory (with {DB_NAME}) nor a directory of runs.")


__all__ = ["DB_NAME", "MIGRATIONS", "SCHEMA_VERSION", "Store", "open_results", "repair_episodes"]
