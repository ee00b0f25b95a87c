"""Load under objectives: the plan of a load run (plan.py, pure), the load generator that runs in its own process
(worker.py, the only module that imports Locust), resource usage from the engine (usage.py), and what the
measurement means against the objectives (report.py)."""
