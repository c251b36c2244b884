"""The ASGI module for any ASGI server: ``uvicorn entrypoints.asgi:app`` (settings from the environment)."""

from entrypoints.http.app import create_app

app = create_app()
