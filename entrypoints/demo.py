"""``make run`` until the HTTP service lands: a workflow on SQLite, its progress printed as it happens."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from entrypoints.celery_compat import chord, create_compatible_task, embedded_engine
from entrypoints.exit_codes import EXIT_OK


@create_compatible_task(name="demo.outline")
def outline(topic: str, sections: int) -> list[str]:
    """Plan the sections of an article."""
    return [f"{topic}: part {number}" for number in range(1, sections + 1)]


@create_compatible_task(name="demo.write", bind=True)
async def write(self: Any, title: str) -> str:
    """Write one section, reporting progress paragraph by paragraph."""
    paragraphs = []
    for number in range(1, 4):
        await asyncio.sleep(0.05)
        paragraphs.append(f"Paragraph {number} about {title.lower()}.")
        await self.update_state(state="PROGRESS", meta={"section": title, "paragraphs": number, "of": 3})
    return f"## {title}\n\n" + "\n\n".join(paragraphs)


@create_compatible_task(name="demo.assemble")
def assemble(sections: list[str]) -> str:
    """Join the sections, in plan order."""
    return "\n\n".join(sections)


@create_compatible_task(name="demo.fan_out", bind=True)
def fan_out(self: Any, titles: list[str]) -> None:
    """Write every planned section in parallel, then assemble them."""
    self.replace(chord([write.s(title) for title in titles], assemble.s()))


DEMO_DB_PATH = "./var/demo.db"


async def main() -> int:
    db_path = DEMO_DB_PATH  # its own file: the service's (GEEKBLOG_DB_PATH) may be held by `make run`
    async with embedded_engine(db_path=db_path) as engine:
        print(f"GeekBlog Tasks demo: embedded engine on SQLite at {db_path}")
        events = engine.bus.subscribe(None)
        handle = await (outline.s("Durable task queues", 4) | fan_out.s()).apply_async()
        print(f"workflow {handle.id} submitted")
        waiting = asyncio.ensure_future(handle.get(timeout=60))
        while not waiting.done():
            event = await events.next(0.2)
            if event is None:
                continue
            if event.progress is not None:
                meta = event.progress.meta
                print(f"  {event.task:<14} {meta['section']:<30} {meta['paragraphs']}/{meta['of']} paragraphs")
            elif event.kind == "job":
                print(f"  {event.task:<14} {event.state}")
        events.close()
        article = await waiting
        print(f"\nworkflow {handle.id}: {handle.state}\n")
        print(article)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
