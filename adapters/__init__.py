"""Adapters: the concrete technology behind each port (SQLite, memory, asyncio)."""
