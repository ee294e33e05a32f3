"""Build time: one folder per stage of the flow (spec, pipeline, runtimes, measure, rollout,
kserve, cli), each run as `python -m scripts <step>` (see `--help`)."""
