"""User-facing errors: one line that says what is wrong, where, and how to fix it."""


class TextclfError(Exception):
    """An error a user can fix; the CLI prints its message alone and exits non-zero."""

    exit_code = 2


class ConfigError(TextclfError):
    """A bad config key or value."""


class DataError(TextclfError):
    """Input data that cannot be read or used."""


class ValidationFailed(TextclfError):
    """The data gate stopped the run before training."""

    exit_code = 3


class TrainingFailed(TextclfError):
    """A training process failed or timed out."""

    exit_code = 4


class ModelNotFound(TextclfError):
    """A model path, hub id or registry URI that cannot be resolved."""


class AugmentSetupError(TextclfError):
    """A missing augmentation resource (WordNet, a tagger, a translation backend)."""


class ExportFailed(TextclfError):
    """A model export (ONNX) that failed or does not match the torch model."""
