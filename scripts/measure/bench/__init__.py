"""`make bench`: in-process limits, every runtime's deployments beside their stock setups under
perf_analyzer's load, and the report (scripts/measure/bench/run.py drives it). The runtimes'
bench capability imports deployments.py from here, so this package imports nothing itself."""
