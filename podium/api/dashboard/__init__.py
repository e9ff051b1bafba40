"""The dashboard: a static page at ``/dashboard`` and the JSON it reads under
``/admin/stats/...``.

The page (HTML, JS, CSS in this package) holds no data, so it is served to anyone who can
reach Podium; every number comes from ``/admin/stats/...``, which the admin check guards
(``Podium.admin_auth``: the admin key, or loopback clients while none is set). The page asks
for the admin key when the API answers 401 and sends it as a bearer token.
"""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING, Any

from podium.api.admin import admin_route
from podium.api.http import Request, Response
from podium.errors import PodiumError
from podium.observe import stats
from podium.observe.feedback import Rows, signals_for

if TYPE_CHECKING:
    from podium.app import Podium

STATIC = {
    "/dashboard": ("index.html", "text/html; charset=utf-8"),
    "/dashboard/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/dashboard/charts.js": ("charts.js", "text/javascript; charset=utf-8"),
    "/dashboard/style.css": ("style.css", "text/css; charset=utf-8"),
}
FILTERS = ("caller", "worker", "contract", "route", "status")


def _static(name: str, media_type: str) -> Any:
    body = files(__name__).joinpath(name).read_bytes()
    headers = {"cache-control": "no-cache", "x-content-type-options": "nosniff"}

    async def serve(_: Request) -> Response:
        return Response(body, 200, headers, media_type)

    return serve


def register(podium: Podium, db: Rows) -> None:
    config = podium.config.observe.dashboard
    for path, (name, media_type) in STATIC.items():
        podium.app.route("GET", path, _static(name, media_type), podium.app.fallback_errors)

    def window(request: Request) -> stats.Window:
        query = request.query
        since = query.get("since")
        until = query.get("until")
        return stats.window(
            stats.parse_time(since, param="since") if since else None,
            stats.parse_time(until, param="until") if until else None,
            max_range_days=config.max_range_days,
            max_buckets=config.max_buckets,
        )

    def limit(request: Request) -> int:
        raw = request.query.get("limit", "50")
        try:
            value = int(raw)
        except ValueError:
            raise PodiumError("invalid_request", "'limit' must be a whole number") from None
        return max(1, min(value, config.max_rows))

    def prices() -> dict[str, Any]:
        return {worker.name: worker.config.price for worker in podium.pool}

    def baseline(request: Request) -> str:
        chosen = request.query.get("baseline") or config.baseline
        if chosen:
            return chosen
        known = prices()
        if not known:
            raise PodiumError("invalid_request", "no workers to compare against", param="baseline")
        # The dearest worker by output price: "what if everything had gone to the big model".
        return max(known, key=lambda name: (known[name].output, known[name].input))

    def answer(w: stats.Window, data: Any) -> Response:
        return Response.json({"window": w.describe(), "data": data})

    async def meta(request: Request) -> Response:
        return Response.json(
            {
                "workers": [
                    {
                        "name": worker.name,
                        "price": worker.config.price.model_dump(),
                        "breaker": worker.breaker.state,
                        "draining": worker.draining,
                    }
                    for worker in podium.pool
                ],
                "baseline": baseline(request),
                "max_range_days": config.max_range_days,
                "max_rows": config.max_rows,
                "capture_content": podium.config.observe.capture_content,
            }
        )

    async def overview(request: Request) -> Response:
        w = window(request)
        return answer(w, await stats.overview(db, w))

    async def spend(request: Request) -> Response:
        w = window(request)
        return answer(w, await stats.spend(db, w, request.query.get("by", "worker")))

    async def routing(request: Request) -> Response:
        w = window(request)
        return answer(w, await stats.routing(db, w, config.max_rows))

    async def quality(request: Request) -> Response:
        w = window(request)
        return answer(w, await stats.quality(db, w, config.max_rows))

    async def latency(request: Request) -> Response:
        w = window(request)
        return answer(w, await stats.latency(db, w))

    async def savings(request: Request) -> Response:
        w = window(request)
        return answer(w, await stats.savings(db, w, baseline(request), prices()))

    async def traces(request: Request) -> Response:
        w = window(request)
        before = request.query.get("before")
        filters = {key: request.query[key] for key in FILTERS if request.query.get(key)}
        rows = await stats.traces(
            db,
            w,
            limit=limit(request),
            before=stats.parse_time(before, param="before") if before else None,
            filters=filters,
        )
        return answer(w, rows)

    async def trace(request: Request) -> Response:
        trace_id = request.params["trace_id"]
        record = await podium.store.get_trace(trace_id)
        if record is None:
            raise PodiumError("not_found", f"no trace {trace_id!r}", param="trace_id")
        from dataclasses import asdict

        return Response.json({"trace": asdict(record), "signals": await signals_for(db, trace_id)})

    for path, handler in (
        ("/admin/stats/meta", meta),
        ("/admin/stats/overview", overview),
        ("/admin/stats/spend", spend),
        ("/admin/stats/routing", routing),
        ("/admin/stats/quality", quality),
        ("/admin/stats/latency", latency),
        ("/admin/stats/savings", savings),
        ("/admin/stats/traces", traces),
        ("/admin/stats/traces/{trace_id}", trace),
    ):
        admin_route(podium, "GET", path, handler)
