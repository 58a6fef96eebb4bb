"""Errors a user can act on.

Every error raised on purpose by the library derives from :class:`RouteloraError`. The CLI prints such an error as
one line (its message) and exits non-zero; any other exception is a bug and is shown with its traceback.
"""


class RouteloraError(Exception):
    """A problem with the user's input or environment, described in words the user can act on."""


class ModelNotFoundError(RouteloraError):
    """The model path does not exist, is not a model directory, or the hub id could not be fetched."""


class RemoteCodeRequiredError(RouteloraError):
    """The checkpoint needs code from its own repository, and ``trust_remote_code`` was not given."""


class UnknownArchitectureError(RouteloraError):
    """routelora does not know where this architecture keeps its language model."""


class FileFormatError(RouteloraError):
    """A file routelora reads is missing, is not what its name says, or holds the wrong structure."""


class ExpertFormatError(FileFormatError):
    """An expert or PEFT adapter directory is missing a file, has a broken one, or holds an unsupported adapter."""
