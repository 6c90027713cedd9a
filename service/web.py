"""The worker's pages beside Faust's: ``/health`` (readiness) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import faust
import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.ports import Models, StateStore

__all__ = ["add_pages"]


def add_pages(app: faust.App, *, store: StateStore, models: Models) -> None:
    """Serve ``/health`` and ``/metrics`` on the app's web server."""

    async def health(web: View, request: Request) -> Response:
        store_ok = await store.ping()
        body = {
            "status": "ok" if store_ok else "degraded",
            "redis": store_ok,
            "model_version": models.model.version,
        }
        return web.bytes(
            orjson.dumps(body), content_type="application/json", status=200 if store_ok else 503
        )

    async def prometheus(web: View, request: Request) -> Response:
        # As a header: aiohttp refuses a content_type argument with a charset in it (500).
        return web.bytes(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.page("/health")(health)
    app.page("/metrics")(prometheus)
