"""Where everything lives for one spec: the one place that names a generated folder.

Two roots: `root`, the spec's folder, where the spec's own paths (checkpoints, labels, data)
and its `module:` imports resolve; and `out`, where the build writes (the spec's folder
unless `OUT=` says otherwise). Run state (server workdirs, pid files, keys, logs, scratch)
lives in one hidden folder under `out`, which `make clean` removes only after `make stop`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scripts.spec.schema import ModelSpec

PROJECT = Path(__file__).resolve().parents[2]  # this checkout: its defaults, its handlers
RUN_STATE = ".torchship"
TORCHSERVE_CONFIG = "config.properties"


@dataclass(frozen=True)
class ArtifactDir:
    """One model version's artifact folder and the files every later step reads from it: the
    folder's contract, named here once."""

    root: Path

    @property
    def golden(self) -> Path:
        """Golden samples of a tensor model: inputs and eager outputs (npz)."""
        return self.root / "golden.npz"

    @property
    def golden_generation(self) -> Path:
        """Golden prompts of a generation model and eager generate()'s tokens."""
        return self.root / "golden_generation.json"

    @property
    def stamp(self) -> Path:
        """The export's fingerprint and the formats it wrote."""
        return self.root / "build.json"

    @property
    def report(self) -> Path:
        """The verification report of every format against eager."""
        return self.root / "verify.json"

    @property
    def record(self) -> Path:
        """What this version was built from (sealed: a built version is immutable)."""
        return self.root / "version.json"


@dataclass(frozen=True)
class Layout:
    root: Path  # the spec's folder: inputs resolve here
    out: Path  # generated outputs go here

    @classmethod
    def of(cls, spec_root: Path, out: Path | None = None) -> Layout:
        """The layout of a spec whose root is `spec_root`; `out` (relative to the working
        folder) moves every output elsewhere."""
        return cls(spec_root.resolve(), (out or spec_root).resolve())

    # --- inputs ------------------------------------------------------------------------------
    def source(self, path: str | Path) -> Path:
        """A path written in the spec (checkpoint, labels, vocabulary), as a file."""
        return self.root / path

    @property
    def torchserve_config(self) -> Path:
        """config.properties: the user's beside the spec, else this project's hardened one."""
        own = self.root / TORCHSERVE_CONFIG
        return own if own.exists() else PROJECT / TORCHSERVE_CONFIG

    # --- outputs -----------------------------------------------------------------------------
    @property
    def artifacts(self) -> Path:
        return self.out / "artifacts"

    @property
    def model_store(self) -> Path:
        return self.out / "model_store"

    @property
    def triton_repo(self) -> Path:
        return self.out / "triton_repo"

    @property
    def reports(self) -> Path:
        return self.out / "reports"

    @property
    def kserve(self) -> Path:
        return self.out / "kserve"

    def artifact_dir(self, spec: ModelSpec) -> Path:
        """One model version's exports, golden samples and verification report."""
        return self.artifacts / spec.name / str(spec.version)

    def artifact(self, spec: ModelSpec) -> ArtifactDir:
        """The same folder with its files named."""
        return ArtifactDir(self.artifact_dir(spec))

    # --- run state ---------------------------------------------------------------------------
    @property
    def run(self) -> Path:
        return self.out / RUN_STATE

    def state(self, name: str) -> Path:
        """A folder of run state: a server's workdir (its runtime's name), `bench`, `perf`, ..."""
        return self.run / name

    def generated(self) -> list[Path]:
        """What `make clean` removes (after `make stop`); checkpoints are the spec's paths."""
        return [
            self.artifacts,
            self.model_store,
            self.triton_repo,
            self.reports,
            self.kserve,
            self.run,
        ]

    def shown(self, path: Path) -> Path:
        """A path as printed: relative to the working folder when inside it (the examples),
        absolute otherwise (a user's repository served from this checkout)."""
        path, here = path.resolve(), Path.cwd().resolve()
        return path.relative_to(here) if path.is_relative_to(here) else path
