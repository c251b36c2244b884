"""The API documentation pages work offline: every script, style and image they reference is a URL of this
service, and each one is served (issue 15: ``/schema`` was blank with no CDN, "Redoc is not defined")."""

from __future__ import annotations

import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.http.docs import ASSETS
from entrypoints.settings import Settings

PAGES = ["/schema", "/schema/redoc", "/schema/swagger"]
REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def client() -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(create_app(Container(settings=Settings(persistence="memory")))) as test_client:
        yield test_client


@pytest.mark.parametrize("page", PAGES)
async def test_each_docs_page_references_only_local_urls_that_are_served(
    client: AsyncTestClient[Litestar], page: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    head = html.split("<body", 1)[0]  # the body embeds the document itself, whose texts are not references
    assert not re.search(r"https?://|//[a-z0-9]", head, re.IGNORECASE), head
    references = REFERENCE.findall(html)
    scripts = [url for url in references if url.endswith(".js")]
    assert scripts, f"{page} loads no script at all"
    for url in references:
        assert url.startswith("/schema/assets/"), f"{page} references {url!r}"
        served = await client.get(url)
        assert served.status_code == 200, (url, served.status_code)
        assert len(served.content) > 10_000, url
        kind = "text/css" if url.endswith(".css") else "javascript"
        assert kind in served.headers["content-type"], (url, served.headers["content-type"])


async def test_the_default_page_is_redoc_from_the_vendored_bundle(client: AsyncTestClient[Litestar]) -> None:
    html = (await client.get("/schema")).text
    assert '<script src="/schema/assets/redoc/redoc.standalone.js"' in html and "Redoc.init(" in html
    swagger = (await client.get("/schema/swagger")).text
    assert "/schema/assets/swagger-ui/swagger-ui-bundle.js" in swagger and "SwaggerUIBundle(" in swagger


@pytest.mark.parametrize("page", ["/schema/elements", "/schema/rapidoc"])
async def test_pages_that_need_a_cdn_are_not_offered(client: AsyncTestClient[Litestar], page: str) -> None:
    assert (await client.get(page)).status_code == 404


async def test_the_documents_are_still_served(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.get("/schema/openapi.json")).json()["info"]["title"] == "GeekBlog Tasks"
    assert "openapi:" in (await client.get("/schema/openapi.yaml")).text
    document = (await client.get("/schema/openapi.json")).json()
    assert not any(path.startswith("/schema") for path in document["paths"])


def test_the_vendored_files_ship_with_their_licences_in_the_package() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    base = ROOT / "entrypoints" / "http"
    shipped = {path for pattern in package_data["entrypoints.http"] for path in base.glob(pattern) if path.is_file()}
    assert shipped == {path for path in ASSETS.rglob("*") if path.is_file()}
    for vendor in ("redoc", "swagger-ui"):
        assert (ASSETS / vendor / "LICENSE").is_file(), vendor
