"""The composition root builds the engine from settings, and tests can swap any adapter through it."""

from __future__ import annotations

from pathlib import Path

import pytest
from dependency_injector import providers

from adapters.memory_job_repository import InMemoryJobRepository
from adapters.no_peers import NoPeers
from adapters.postgres import PostgresPeerLink
from adapters.sqlite import SqliteJobRepository
from domain.canvas import Signature
from domain.job import Job
from entrypoints.celery_compat import embedded_engine
from entrypoints.container import Container
from entrypoints.settings import Settings, SettingsError
from tests.integration.compat_tasks import add


class TestContainer:
    def test_sqlite_persistence_builds_a_sqlite_repository_at_the_path(self, tmp_path: Path) -> None:
        container = Container(settings=Settings(db_path=str(tmp_path / "x.db"), persistence="sqlite"))
        assert isinstance(container.repo(), SqliteJobRepository)

    def test_memory_persistence_builds_the_memory_repository(self) -> None:
        container = Container(settings=Settings(persistence="memory", max_concurrent_tasks=3))
        assert isinstance(container.repo(), InMemoryJobRepository)
        assert container.engine().dispatcher.max_concurrent == 3

    def test_engines_alone_on_their_storage_have_no_peers_and_postgres_ones_listen(self, tmp_path: Path) -> None:
        for settings in (Settings(persistence="memory"), Settings(db_path=str(tmp_path / "x.db"))):
            engine = Container(settings=settings).engine()
            assert engine.peers is not None and isinstance(engine.peers.link, NoPeers)
        url = "postgresql://postgres@127.0.0.1:5432/unused"
        container = Container(settings=Settings(database_url=url, lease_seconds=2.0, poll_seconds=0.5))
        peers = container.engine().peers
        assert peers is not None and isinstance(peers.link, PostgresPeerLink) and peers.poll_seconds == 0.5
        assert container.engine().settings.lease_seconds == 2.0 and container.dispatcher().owner

    async def test_a_test_can_override_the_repository(self, tmp_path: Path) -> None:
        fake = InMemoryJobRepository()
        container = Container(settings=Settings(db_path=str(tmp_path / "unused.db")))
        container.repo.override(providers.Object(fake))
        async with embedded_engine(container=container):
            handle = await add.delay(1, 2)
            assert await handle.get(timeout=5) == 3
        assert await fake.get(handle.id) is not None
        assert not (tmp_path / "unused.db").exists()

    async def test_a_test_can_override_a_service(self) -> None:
        container = Container(settings=Settings(persistence="memory"))
        real = container.job_service()
        submitted: list[str] = []

        class RecordingJobs:
            """The real job service, recording what is submitted through it."""

            def __getattr__(self, name: str) -> object:
                return getattr(real, name)

            async def submit(self, signature: Signature, **options: object) -> Job:
                submitted.append(signature.task)
                return await real.submit(signature, **options)

        container.job_service.override(providers.Object(RecordingJobs()))
        engine = container.engine()
        assert engine.jobs is container.job_service()
        assert engine.dispatcher is container.dispatcher() is container.maintenance()._dispatcher
        await engine.start()
        try:
            job = await engine.jobs.submit(Signature(task=add.name, args=[1, 2]))
            await engine.jobs.wait(job.id, timeout=5)
            stored = await engine.repo.get(job.id)
            assert stored is not None
            assert stored.result == 3
        finally:
            await engine.stop()
        assert submitted == [add.name]


class TestSettings:
    def test_defaults_without_environment(self) -> None:
        settings = Settings.from_env({})
        assert settings.db_path == "./var/geekblog.db"
        assert settings.persistence == "sqlite"
        assert settings.max_concurrent_tasks == 10

    def test_values_come_from_geekblog_variables(self) -> None:
        settings = Settings.from_env(
            {
                "GEEKBLOG_PERSISTENCE": "memory",
                "GEEKBLOG_MAX_CONCURRENT_TASKS": "4",
                "GEEKBLOG_TASK_MODULES": "a.tasks, b.tasks",
            }
        )
        assert settings.persistence == "memory"
        assert settings.max_concurrent_tasks == 4
        assert settings.task_modules == ("a.tasks", "b.tasks")

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("GEEKBLOG_MAX_CONCURRENT_TASKS", "many"),
            ("GEEKBLOG_PERSISTENCE", "redis"),
            ("GEEKBLOG_MAX_CONCURRENT_TASKS", "0"),
            ("GEEKBLOG_POLL_SECONDS", "0"),
            ("GEEKBLOG_LEASE_SECONDS", "-1"),
        ],
    )
    def test_a_bad_value_is_refused_naming_the_variable(self, name: str, value: str) -> None:
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value})
