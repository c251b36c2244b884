"""The exit codes of the ``geekblog`` command, defined once for every subcommand (serve, purge, backup and the
HTTP client commands): scripts and the README rely on these numbers."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # the job or workflow ended FAILURE or REVOKED; the server could not start or run
EXIT_USAGE: Final = 2  # bad settings or arguments: nothing was done
EXIT_UNAVAILABLE: Final = 3  # the service or the database cannot be used now (unreachable, 401, 5xx, locked)
EXIT_INTERRUPTED: Final = 130  # Ctrl-C (128 + SIGINT, as a shell reports it)
