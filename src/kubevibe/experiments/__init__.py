"""The research harness: run a matrix of models x methods x strategies x prompts x repetitions, keep the results
in SQLite, compute reliability metrics, and write a static report.

  plan.py      the experiment plan (YAML), validated
  matrix.py    the plan expanded into run cells with stable keys
  executor.py  a bounded pool of `kubevibe run` subprocesses; resumable; Ctrl-C safe
  store.py     SQLite schema (numbered migrations), ingestion of run directories, CSV export
  metrics.py   pure functions over rows: Wilson intervals, passItr@k, depth, fix-loop stability, oscillation
  plots.py     hand-made SVG plots (no JavaScript, no external assets)
  report.py    the static HTML report (templates in kubevibe/assets/report/)
  compare.py   two experiments side by side
"""
