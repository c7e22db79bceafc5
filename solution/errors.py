"""Errors raised at the kit's boundaries (files, JSON, media, weights). Each message says what was expected."""


class KitError(Exception):
    """Base class of every error the kit raises on bad input."""


class ConfigError(KitError):
    """A preset, YAML file or override is invalid; the message names the field."""


class TaskFileError(KitError):
    """The tasks file itself is unusable (unreadable, not JSON, not a list): nothing can be answered."""


class TaskError(KitError):
    """One task record is invalid; the other tasks are unaffected."""


class MediaError(KitError):
    """A media file is missing, unreadable or has no usable stream."""


class WeightsError(KitError):
    """A weights folder or file is missing or incomplete; the message lists what is missing and how to get it."""
