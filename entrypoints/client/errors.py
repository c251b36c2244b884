"""What can go wrong in a client command, each error carrying the exit code it ends the command with."""

from __future__ import annotations

from entrypoints.exit_codes import EXIT_UNAVAILABLE, EXIT_USAGE


class CommandError(Exception):
    """An error a command reports as one ``geekblog: <message>`` line, exiting with ``exit_code``."""

    exit_code: int = EXIT_UNAVAILABLE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(CommandError):
    """Bad input given on the command line (a JSON argument, a file): nothing was sent."""

    exit_code = EXIT_USAGE


class ClientError(CommandError):
    """The service answered with an error (``application/problem+json`` or not).

    4xx means the request was refused (exit 2), except 401 (no or wrong token) and 5xx, which mean
    the service cannot be used right now (exit 3).
    """

    def __init__(self, status: int, title: str, detail: str, *, hint: str = "") -> None:
        self.status = status
        self.title = title
        self.detail = detail
        message = f"{detail} ({status} {title})" if detail and detail != title else f"{status} {title}"
        super().__init__(f"{message}; {hint}" if hint else message)
        self.exit_code = EXIT_UNAVAILABLE if status == 401 or status >= 500 else EXIT_USAGE


class ServiceUnavailable(CommandError):
    """The service could not be reached, or the connection broke."""

    exit_code = EXIT_UNAVAILABLE


class StreamBroken(ServiceUnavailable):
    """An event stream that had opened stopped before its end (the caller may poll instead)."""


class WaitTimeout(CommandError):
    """``--timeout`` passed before the job or workflow finished."""

    exit_code = EXIT_UNAVAILABLE
