"""The ASGI module for any ASGI server: ``uvicorn entrypoints.asgi:app`` (settings from the environment)."""

from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.http.hosts import guard_hosts
from entrypoints.settings import Settings

settings = Settings.from_env()
app = guard_hosts(create_app(Container(settings=settings)), settings)  # the Host header checked first
