"""The spec: models.yaml, the single source of truth for every build step."""

from scripts.spec.errors import BuildError, SpecError, UserError, VerificationError
from scripts.spec.loader import load_spec, spec_root
from scripts.spec.schema import Batching, ModelSpec, Serving, SpecFile, TensorSpec, Tolerance

__all__ = [
    "Batching",
    "BuildError",
    "ModelSpec",
    "Serving",
    "SpecError",
    "SpecFile",
    "TensorSpec",
    "Tolerance",
    "UserError",
    "VerificationError",
    "load_spec",
    "spec_root",
]
