"""Run-time code: executes inside TorchServe workers and Triton Python-backend models.

Nothing here imports `scripts/` (build time). The same functions serve both runtimes, so a
request gets the same answer from either.
"""
