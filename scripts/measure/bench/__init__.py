"""`make bench`: in-process limits, every runtime's deployments beside their stock setups under
perf_analyzer's load, and the report (scripts/measure/bench/run.py drives it)."""

from scripts.measure.bench.run import BRIEF_MODELS, FULL_MODELS, run_bench

__all__ = ["BRIEF_MODELS", "FULL_MODELS", "run_bench"]
