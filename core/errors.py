"""The one exception tree of Promotion Studio.

Every error `core` raises on purpose derives from `StudioError`, so callers (the
CLI, the app) can catch one class and show its message. Messages name the value,
the rule it broke and the next step. Exit and HTTP codes are chosen at the edges.
"""

from __future__ import annotations


class StudioError(Exception):
    """Root of every error Promotion Studio raises on purpose."""


class ConfigError(StudioError):
    """An environment variable or policy setting has a value we cannot use."""


class DataError(StudioError):
    """A dataset file or built-in dataset cannot be used for training."""


class TrainingError(StudioError):
    """Fitting, evaluating or logging a model failed."""


class RegistryError(StudioError):
    """The MLflow tracking server or model registry refused or failed a call."""


class VersionNotFoundError(RegistryError):
    """A model version (or the registered model itself) does not exist."""


class AliasNotSetError(RegistryError):
    """An alias such as `production` points to no version."""


class SearchError(StudioError):
    """A run search or comparison cannot be made as asked (e.g. a malformed filter)."""


class PreconditionError(StudioError):
    """A promotion was refused because a precondition does not hold.

    Attributes:
        missing: the names of the preconditions that failed, in order.
    """

    def __init__(self, message: str, missing: list[str] | None = None) -> None:
        super().__init__(message)
        self.missing = missing or []


class ConcurrentMoveError(StudioError):
    """An alias moved between reading it and the compare-and-set that follows."""


class PolicyError(StudioError):
    """A gate policy file or threshold override is malformed."""


class GateError(StudioError):
    """A gate could not be evaluated (as opposed to evaluated and failed)."""


class DeploymentError(StudioError):
    """Launching, stopping or inspecting a model server failed."""


class BackendUnavailableError(DeploymentError):
    """The requested deployment backend (e.g. Docker) cannot be reached."""


class ProbeError(StudioError):
    """A running server could not be probed or smoke-tested."""


class JobError(StudioError):
    """A background job (such as training from the app) cannot be started or read."""
