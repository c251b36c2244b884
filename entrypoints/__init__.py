"""Entry points: the Celery-compatible API, the CLI, the DI container that wires everything."""
