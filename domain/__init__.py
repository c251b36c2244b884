"""Pure models and rules of the task engine: no I/O, no asyncio, no framework."""
