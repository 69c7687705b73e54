"""Errors a user can fix: a config, a data set, a checkpoint.

main.py, ``python -m convert`` and ``python -m jaxvit.predict`` print these as one line,
``error: <message>``, and exit with status 2, without a traceback; anything else keeps
its traceback. A message names the thing that is wrong and the fix, on one line.

Each class also derives from the built-in exception the code raised before
(ValueError or FileNotFoundError), so callers that catch those keep working.
"""

from __future__ import annotations

import sys


class UserError(Exception):
    """A mistake in what the user gave jaxvit (config, data, checkpoint)."""


class ConfigError(UserError, ValueError):
    """A config value or model keyword that cannot work."""


class DataError(UserError, ValueError):
    """A data set that cannot be read as asked (bad files, a missing split, too few examples)."""


class DataNotFoundError(UserError, FileNotFoundError):
    """A data set, folder or file that is not where the config says."""


class CheckpointError(UserError, ValueError):
    """A checkpoint or workdir that does not fit what was asked for."""


class CheckpointNotFoundError(UserError, FileNotFoundError):
    """No checkpoint where one was named."""


def one_line(message: str) -> str:
    """The message as a single line (details after ';')."""
    parts = [p.strip() for p in str(message).splitlines() if p.strip()]
    return "; ".join(parts)


def report(error: BaseException, stream=None) -> int:
    """Prints ``error: <message>`` (one line) to stderr and returns the exit status, 2."""
    message = error.args[0] if error.args else type(error).__name__
    print(f"error: {one_line(message)}", file=stream or sys.stderr, flush=True)
    return 2
