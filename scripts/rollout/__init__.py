"""Versions and zero-downtime rollout (`make rollout`, `make rollback`, `make versions`): the
flow in flow.py, the gate a version passes before it takes traffic in gate.py, the record of
what each runtime serves in state.py. What a runtime does at each step is its plugin's."""
