"""User-facing errors: one line that says what is wrong, where, and how to fix it."""

from typing import Protocol


class TextclfError(Exception):
    """An error a user can fix; the CLI prints its message alone and exits non-zero."""

    exit_code = 2


class ConfigError(TextclfError):
    """A bad config key or value."""


class DataError(TextclfError):
    """Input data that cannot be read or used."""


class GateReport(Protocol):
    """What ValidationFailed carries: textclf.data.validate.ValidationReport (not imported: it imports this)."""

    def markdown(self) -> str: ...


class ValidationFailed(TextclfError):
    """The data gate stopped the run before training; `report` is its ValidationReport."""

    exit_code = 3

    def __init__(self, message: str, report: GateReport | None = None):
        super().__init__(message)
        self.report = report

    def __reduce__(self):  # picklable with its report (Prefect persists failed states)
        return (type(self), (str(self), self.report))


class TrainingFailed(TextclfError):
    """A training process failed or timed out."""

    exit_code = 4


class ModelNotFound(TextclfError):
    """A model path, hub id or registry URI that cannot be resolved."""


class AugmentSetupError(TextclfError):
    """A missing augmentation resource (WordNet, a tagger, a translation backend)."""


class ExportFailed(TextclfError):
    """A model export (ONNX) that failed or does not match the torch model."""
