"""The worker's pages beside Faust's: ``/livez`` (liveness), ``/readyz`` and ``/health``
(readiness), ``/metrics`` (Prometheus)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.lineage import StateLineage
from service.model import ModelHolder
from service.model import Refusal as ModelRefusal
from service.ports import StateStore
from service.readiness import Readiness
from service.rules import Refusal as RulesRefusal
from service.rules import RulesHolder

__all__ = ["add_pages"]


def add_pages(
    app: faust.App,
    *,
    store: StateStore,
    models: ModelHolder,
    readiness: Readiness,
    lineage: StateLineage,
    rules: RulesHolder | None = None,
) -> None:
    """Serve ``/livez``, ``/readyz``, ``/health`` and ``/metrics`` on the app's web server.

    ``/livez`` is 200 while the worker's loops run — holding on Redis or the broker is not
    death: restarting would not help — and 503 with the reason once the transactions loop
    has ended (the process is then stopping or stuck: restart it).

    ``/readyz`` and ``/health`` (kept for compatibility: the same answer with more detail)
    are 200 only while the store answers and the batch path holds on nothing; else 503 with
    the faults (``{"state": "Redis: OutOfMemoryError: ..."}``). The model was loaded and
    probe-scored before it served (a worker without one does not start). The last model
    refused (the serving one stays) is shown too, the challenger scored in its shadow
    (``challenger_version``, null without one) and the last challenger refused
    (``challenger_refused``, until one is served or the pointer is removed), and whether
    the feature state is whole
    (``"state"``; a partial state marks decisions degraded but does not make the worker
    unready: it decides, on what it has). So are the rules version in service
    (``rules_version``, null without a rules file) and the last rules file refused
    (``rules_refused``, until the file holds rules that are served), and each list the rules
    declare (``lists``: its field, entries not expired, version and a conflict, or null; null
    without a rules file) with when the lists were last read from Redis
    (``lists_read_at``; a failed read is the fault ``lists``)."""

    async def livez(web: View, request: Request) -> Response:
        dead = readiness.dead()
        body = {"status": "dead", "reason": dead} if dead else {"status": "alive"}
        return web.bytes(
            orjson.dumps(body), content_type="application/json", status=503 if dead else 200
        )

    async def readyz(web: View, request: Request) -> Response:
        reasons = dict(readiness.faults)
        if not await store.ping():
            reasons.setdefault("state", "Redis does not answer PING")
        body = {"status": "not ready" if reasons else "ready", "reasons": reasons,
                "model_version": models.model.version}
        return web.bytes(
            orjson.dumps(body), content_type="application/json", status=503 if reasons else 200
        )

    async def health(web: View, request: Request) -> Response:
        store_ok = await store.ping()
        faults = readiness.faults
        ok = store_ok and not faults
        body: dict[str, Any] = {
            "status": "ok" if ok else "degraded",
            "redis": store_ok,
            "faults": faults,
            "model_version": models.model.version,
            "state": lineage.describe(),
            "state_lost_at": (
                datetime.fromtimestamp(lineage.lost_at, UTC).isoformat()
                if lineage.lost_at is not None
                else None
            ),
        }
        body["model_refused"] = _refusal(models.refused)
        challenger = models.challenger
        body["challenger_version"] = challenger.version if challenger is not None else None
        body["challenger_refused"] = _refusal(models.challenger_refused)
        served = rules.rules if rules is not None else None
        body["rules_version"] = served.version if served is not None else None
        body["rules_refused"] = _refusal(rules.refused if rules is not None else None)
        lists = rules.lists if rules is not None else None
        body["lists"] = lists.describe(served) if lists is not None else None
        read_at = lists.refreshed_at if lists is not None else None
        body["lists_read_at"] = (
            datetime.fromtimestamp(read_at, UTC).isoformat() if read_at is not None else None
        )
        return web.bytes(
            orjson.dumps(body), content_type="application/json", status=200 if ok else 503
        )

    async def prometheus(web: View, request: Request) -> Response:
        # As a header: aiohttp refuses a content_type argument with a charset in it (500).
        return web.bytes(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.page("/livez")(livez)
    app.page("/readyz")(readyz)
    app.page("/health")(health)
    app.page("/metrics")(prometheus)


def _refusal(refused: ModelRefusal | RulesRefusal | None) -> dict[str, str] | None:
    """A refused model's or rules file's version, reason and time, for ``/health``."""
    if refused is None:
        return None
    return {
        "version": refused.version,
        "reason": refused.reason,
        "at": datetime.fromtimestamp(refused.at, UTC).isoformat(),
    }
