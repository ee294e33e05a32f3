"""KServe bundles: `make kserve` (bundle.py, in the project's environment) asks each runtime
plugin for its storage tree, then writes the manifests with the kserve SDK (manifests.py, run
in .venv-kserve: the SDK's protobuf cannot share an environment with tritonclient's)."""
