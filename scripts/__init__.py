"""Build time: one module per step, each run as `python -m scripts <step>` (see `--help`)."""
