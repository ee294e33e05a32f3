"""Errors a user can cause and fix. The CLI prints them as one line each, without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Base for problems the user can fix; `problems` holds one line each."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class SpecError(UserError):
    """A problem in models.yaml."""


class BuildError(UserError):
    """A build step cannot proceed (missing checkpoint, failed export, ...)."""


class VerificationError(BuildError):
    """An exported format disagrees with eager PyTorch beyond the spec's tolerance."""
