"""The client side of the ``geekblog`` command: every command but ``serve`` talks to a running service.

``http`` is a small JSON client of the HTTP API, ``sse`` parses its event streams, ``follow`` waits for a
job or workflow to finish (stream first, polling if the stream breaks), ``render`` formats what people
read, and ``commands`` wires them into ``argparse`` sub-commands. Errors become one ``geekblog: ...``
line and an exit code (see ``entrypoints.cli``), never a traceback.
"""
