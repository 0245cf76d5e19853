"""The two kinds of error a user sees: bad input (exit 2) and a failure while running (exit 1).

Both carry one line that says what is wrong and what to do; the CLI prints that line without a
traceback unless `--debug` is given.
"""


class TuneclusterError(Exception):
    """Base class; `exit_code` is what the CLI exits with."""

    exit_code = 1


class UsageError(TuneclusterError):
    """The user asked for something invalid: a bad spec, a bad option, a missing file."""

    exit_code = 2


class RunFailure(TuneclusterError):
    """Something went wrong while running: a role died, the search failed, a port is taken."""

    exit_code = 1
