"""Build time: one folder per stage of the flow (spec, build, runtimes, measure, cli), each run as `python -m scripts <step>` (see `--help`)."""
