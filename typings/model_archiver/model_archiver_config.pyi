from dataclasses import dataclass
from typing import Literal

@dataclass
class ModelArchiverConfig:
    model_name: str
    handler: str
    version: str
    serialized_file: str | None = None
    model_file: str | None = None
    extra_files: str | None = None
    runtime: str = "python"
    export_path: str = ...
    archive_format: Literal["default", "tgz", "no-archive"] = "default"
    force: bool = False
    requirements_file: str | None = None
    config_file: str | None = None
