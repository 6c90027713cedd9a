"""The worker's pages beside Faust's: ``/health`` (readiness) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.lineage import StateLineage
from service.model import ModelHolder
from service.ports import StateStore
from service.readiness import Readiness

__all__ = ["add_pages"]


def add_pages(
    app: faust.App,
    *,
    store: StateStore,
    models: ModelHolder,
    readiness: Readiness,
    lineage: StateLineage,
) -> None:
    """Serve ``/health`` and ``/metrics`` on the app's web server.

    ``/health`` is 200 only while the store answers and the batch path holds on nothing;
    else 503 with the faults (``{"state": "Redis: OutOfMemoryError: ..."}``). The last
    model refused (the serving one stays) is shown too, and whether the feature state is
    whole (``"state"``; a partial state marks decisions degraded but does not make the worker
    unready: it decides, on what it has)."""

    async def health(web: View, request: Request) -> Response:
        store_ok = await store.ping()
        faults = readiness.faults
        ok = store_ok and not faults
        body: dict[str, Any] = {
            "status": "ok" if ok else "degraded",
            "redis": store_ok,
            "faults": faults,
            "model_version": models.model.version,
            "model_refused": None,
            "state": lineage.describe(),
            "state_lost_at": (
                datetime.fromtimestamp(lineage.lost_at, UTC).isoformat()
                if lineage.lost_at is not None
                else None
            ),
        }
        if models.refused is not None:
            body["model_refused"] = {
                "version": models.refused.version,
                "reason": models.refused.reason,
                "at": datetime.fromtimestamp(models.refused.at, UTC).isoformat(),
            }
        return web.bytes(
            orjson.dumps(body), content_type="application/json", status=200 if ok else 503
        )

    async def prometheus(web: View, request: Request) -> Response:
        # As a header: aiohttp refuses a content_type argument with a charset in it (500).
        return web.bytes(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.page("/health")(health)
    app.page("/metrics")(prometheus)
