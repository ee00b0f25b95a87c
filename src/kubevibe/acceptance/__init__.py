"""Acceptance tests: Tavern files that check a live deployment against the request (the ACCEPT stage).

tavern_file: read, check (refuse host code in tests the user did not write) and write Tavern files;
sources: where a run's tests come from, frozen into <run>/acceptance/acceptance.tavern.yaml;
execute: run a Tavern file with Tavern itself in a subprocess and read back per-test results;
writer: the test-writer LLM step (tests of the observable contract, written before any code exists).
"""
