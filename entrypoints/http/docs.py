"""The API documentation pages, served with no network but this service's own.

Litestar's default pages load Redoc, Swagger UI, Stoplight Elements and RapiDoc (and a favicon and Google
fonts) from CDNs: offline, or behind a proxy that blocks them, ``/schema`` was a blank page ("Redoc is not
defined"). Here the Redoc standalone bundle and the Swagger UI dist files are vendored in ``docs_assets/``
(with their licences; see ``docs_assets/README.md`` for the versions) and served under
``/schema/assets/``; Elements and RapiDoc are not offered.

* ``/schema`` and ``/schema/redoc``: Redoc;
* ``/schema/swagger``: Swagger UI;
* ``/schema/openapi.json``, ``/schema/openapi.yaml``: the document.
"""

from __future__ import annotations

from pathlib import Path

from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    OpenAPIRenderPlugin,
    RedocRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)
from litestar.router import Router
from litestar.static_files import create_static_files_router

ASSETS = Path(__file__).parent / "docs_assets"
ASSETS_PATH = "/schema/assets"
NO_FAVICON = ""  # Litestar's default favicon is on a CDN


def render_plugins() -> list[OpenAPIRenderPlugin]:
    """The pages under ``/schema``; the first one with ``/`` is the default page."""
    return [
        RedocRenderPlugin(
            path=["/", "/redoc"],
            js_url=f"{ASSETS_PATH}/redoc/redoc.standalone.js",
            google_fonts=False,
            favicon=NO_FAVICON,
        ),
        SwaggerRenderPlugin(
            path="/swagger",
            js_url=f"{ASSETS_PATH}/swagger-ui/swagger-ui-bundle.js",
            css_url=f"{ASSETS_PATH}/swagger-ui/swagger-ui.css",
            standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui/swagger-ui-standalone-preset.js",
            favicon=NO_FAVICON,
        ),
        JsonRenderPlugin(),
        YamlRenderPlugin(),
    ]


def assets_router() -> Router:
    """``/schema/assets/...``: the vendored files, cached by browsers for a day, not in the document."""
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[ASSETS],
        include_in_schema=False,
        cache_control=CacheControlHeader(max_age=86400, public=True),
        name="docs-assets",
    )
