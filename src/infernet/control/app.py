"""The control plane's ASGI app: OpenAI-compatible API, job API, node WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.middleware import Middleware
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from infernet import __version__, config
from infernet.control import errors, pricing, probe, schemas
from infernet.control.billing import Billing, platform_identity
from infernet.control.errors import APIError, BodyLimit
from infernet.control.hub import CONNECT_PATH, Hub, Settings
from infernet.control.jobs import LiveJob
from infernet.control.openai_format import ChunkWriter, chat_response, completion_response, sse
from infernet.control.store import KeyLimits, KeyRecord, Store
from infernet.protocol import auth, receipts

log = logging.getLogger("infernet.control")

_DASHBOARD = Path(__file__).resolve().parent.parent / "web" / "dashboard.html"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

# A failed job's error code -> the HTTP status a client sees before streaming starts.
_FAIL_STATUS = {
    "model_not_found": 404,
    "over_capacity": 429,
    "no_eligible_node": 503,
    "context_length_exceeded": 400,
    "invalid_request": 400,
}


@dataclass
class ControlPlane:
    store: Store
    hub: Hub

    @classmethod
    async def open(cls, db_url: str, settings: Settings | None = None, data_dir: Path | None = None) -> ControlPlane:
        """`data_dir` holds the platform's signing key; default: beside a SQLite file, else INFERNET_HOME."""
        if data_dir is None:
            data_dir = Path(db_url.removeprefix("sqlite:///")).parent if db_url.startswith("sqlite:///") else config.home()
        store = await Store.open(db_url)
        billing = Billing(store, platform_identity(data_dir))
        return cls(store, Hub(store, settings or Settings(), billing=billing))

    @property
    def billing(self) -> Billing:
        assert self.hub.billing is not None
        return self.hub.billing


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json", headers=headers)


def create_app(cp: ControlPlane, *, admin_key: str | None = None, admin_name: str = "admin") -> Starlette:
    hub, store = cp.hub, cp.store

    async def authenticate(request: Request) -> KeyRecord:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.unauthorized()
        rec = await store.lookup_key(token.strip())
        if rec is None:
            raise errors.unauthorized("Invalid API key, or the key was revoked.")
        return rec

    def endpoint(fn: Callable[[Request, KeyRecord], Awaitable[Response]], *, admin: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            try:
                key = await authenticate(request)
                if admin and not key.is_admin:
                    raise errors.forbidden("This needs an admin key.")
                return await fn(request, key)
            except APIError as exc:
                return exc.response()

        return handler

    # -- meta -----------------------------------------------------------------------------

    async def dashboard(request: Request) -> Response:
        # Static page; it calls the same API with the key the operator pastes in.
        return HTMLResponse(_DASHBOARD.read_text())

    async def metrics(request: Request, key: KeyRecord) -> Response:
        return Response(hub.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok", "version": __version__, "nodes": len(hub.nodes)})

    async def list_models(request: Request, key: KeyRecord) -> Response:
        data = []
        for name, kind in sorted(hub.models().items()):
            data.append({"id": name, "object": "model", "created": 0, "owned_by": "infernet", "kind": kind, "nodes": len(hub.fleet.serving(name))})
        return _json({"object": "list", "data": data})

    # -- inference ------------------------------------------------------------------------

    async def start_job(key: KeyRecord, kind: str, req: Any, body: dict[str, Any], idem: str | None = None) -> tuple[LiveJob | None, dict | None]:
        model = req.model
        route = schemas.route_of(req)
        served_kind = hub.check_servable(model)
        if (kind == "embedding") != (served_kind == "embedding"):
            raise errors.bad_request(f"`{model}` is a{'n embedding' if served_kind == 'embedding' else ' chat'} model; use the matching endpoint.", param="model", code="model_not_supported")
        return await hub.submit(key.id, kind, model, body, idem, route)

    def fail_error(job: LiveJob) -> APIError:
        err = job.error or {}
        code = err.get("code", "node_failed")
        status = _FAIL_STATUS.get(code, 502)
        headers = {"Retry-After": str(err.get("retry_after", 1))} if status == 429 else None
        kind = "invalid_request_error" if status < 500 else "server_error"
        if status == 429:
            kind = "rate_limit_error"
        elif status == 503:
            kind = "service_unavailable"
        return APIError(status, err.get("message", "the job failed"), type=kind, code=code, headers=headers)

    async def generate(request: Request, key: KeyRecord, kind: str) -> Response:
        req_type = schemas.ChatRequest if kind == "chat" else schemas.CompletionRequest
        req = schemas.parse(await request.body(), req_type)
        body = schemas.client_body(req)
        job, _ = await start_job(key, kind, req, body)
        assert job is not None
        # Wait until a node has the job so queueing and routing failures get a real status.
        await wait_unless_disconnected(request, job, job.placed)
        if job.finished.is_set() and job.status != "completed" and not job.delivered:
            raise fail_error(job)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(stream_openai(job, include_usage), media_type="text/event-stream", headers=SSE_HEADERS)
        await wait_unless_disconnected(request, job, job.finished)
        if job.status != "completed":
            raise fail_error(job)
        return _json(chat_response(job) if kind == "chat" else completion_response(job))

    async def wait_unless_disconnected(request: Request, job: LiveJob, event: asyncio.Event) -> None:
        if event.is_set():
            return
        done_wait = asyncio.ensure_future(event.wait())
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            finished, _ = await asyncio.wait({done_wait, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done_wait.cancel()
            gone.cancel()
        if done_wait not in finished:
            job.request_cancel()
            raise APIError(499, "client closed the request", code="client_closed")

    async def stream_openai(job: LiveJob, include_usage: bool) -> AsyncIterator[bytes]:
        writer = ChunkWriter(job, include_usage)
        try:
            first = writer.first()
            if first:
                yield first
            async for _, typ, data in job.follow():
                if typ == "token":
                    yield writer.text(data["text"])
                elif typ == "done":
                    yield writer.done(data["finish_reason"], data["usage"])
                else:
                    yield sse({"error": {"message": data.get("message"), "type": "server_error", "param": None, "code": data.get("code")}})
        finally:
            if not job.finished.is_set():
                job.request_cancel()

    async def chat_completions(request: Request, key: KeyRecord) -> Response:
        return await generate(request, key, "chat")

    async def completions(request: Request, key: KeyRecord) -> Response:
        return await generate(request, key, "completion")

    async def embeddings(request: Request, key: KeyRecord) -> Response:
        req = schemas.parse(await request.body(), schemas.EmbeddingRequest)
        body = schemas.to_body(req)
        job, _ = await start_job(key, "embedding", req, body)
        assert job is not None
        await wait_unless_disconnected(request, job, job.finished)
        if job.status != "completed" or job.result is None:
            raise fail_error(job)
        return _json(job.result)

    # -- job API --------------------------------------------------------------------------

    def job_view(row: dict[str, Any]) -> dict[str, Any]:
        usage = None
        if row.get("prompt_tokens") is not None:
            usage = {"prompt_tokens": row["prompt_tokens"], "completion_tokens": row["completion_tokens"], "total_tokens": row["prompt_tokens"] + row["completion_tokens"]}
        return {
            "id": row["id"],
            "object": "job",
            "status": row["status"],
            "kind": row["kind"],
            "model": row["model"],
            "node_id": row.get("node_id"),
            "created_at": row["created_at"],
            "finished_at": row.get("finished_at"),
            "attempts": row.get("attempts", 0),
            "result": {"text": row.get("output"), "finish_reason": row.get("finish_reason")} if row["status"] == "completed" else None,
            "usage": usage,
            "error": {"message": row["error"]} if row.get("error") else None,
        }

    async def own_job(job_id: str, key: KeyRecord) -> dict[str, Any]:
        live = hub.jobs.get(job_id)
        row = live.row() if live is not None else await store.get_job(job_id)
        # Another key's job is reported as missing, not forbidden: ids leak nothing.
        if row is None or (row["key_id"] != key.id and not key.is_admin):
            raise errors.not_found(f"No job `{job_id}`.", code="job_not_found")
        return row

    async def create_job(request: Request, key: KeyRecord) -> Response:
        req = schemas.parse(await request.body(), schemas.JobRequest)
        if (req.messages is None) == (req.prompt is None):
            raise errors.bad_request("A job needs exactly one of `messages` (chat) or `prompt` (completion).", param="messages")
        body = schemas.to_body(req)
        kind = "chat" if req.messages is not None else "completion"
        idem = request.headers.get("idempotency-key")
        if idem is not None and not 1 <= len(idem) <= 200:
            raise errors.bad_request("Idempotency-Key must be 1 to 200 characters.", param="Idempotency-Key")
        job, existing = await start_job(key, kind, req, body, idem)
        if existing is not None:
            if (existing["kind"], existing["model"], existing["body"]) != (kind, req.model, body):
                raise APIError(409, "This Idempotency-Key was already used with a different request; use a new key.", param="Idempotency-Key", code="idempotency_key_reused")
            return _json(job_view(existing), 200)
        assert job is not None
        return _json(job_view(await own_job(job.id, key)), 202, headers={"Location": f"/api/v1/jobs/{job.id}"})

    async def settled_job(job_id: str, key: KeyRecord) -> dict[str, Any]:
        """The job's row; when it just finished here, once its end is stored and settled."""
        row = await own_job(job_id, key)
        live = hub.jobs.get(row["id"])
        if live is not None and live.finished.is_set() and not live.ended.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.ended.wait(), 5.0)
            row = await own_job(job_id, key)
        return row

    async def get_job(request: Request, key: KeyRecord) -> Response:
        return _json(job_view(await settled_job(request.path_params["job_id"], key)))

    async def list_jobs(request: Request, key: KeyRecord) -> Response:
        await store.journal.flush()  # a list is read from the database: let it catch up first
        rows = [hub.jobs[r["id"]].row() if r["id"] in hub.jobs else r for r in await store.list_jobs(None if key.is_admin and request.query_params.get("all") else key.id)]
        return _json({"object": "list", "data": [job_view(r) for r in rows]})

    async def cancel_job(request: Request, key: KeyRecord) -> Response:
        row = await own_job(request.path_params["job_id"], key)
        live = hub.jobs.get(row["id"])
        if live is not None:
            live.request_cancel("cancelled by the client")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.finished.wait(), hub.settings.cancel_grace_s + 1)
        return _json(job_view(await own_job(row["id"], key)))

    async def stream_job(request: Request, key: KeyRecord) -> Response:
        row = await own_job(request.path_params["job_id"], key)
        last = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
        try:
            after = max(0, int(last))
        except ValueError:
            raise errors.bad_request("Last-Event-ID must be an event number.", param="Last-Event-ID") from None

        async def events() -> AsyncIterator[bytes]:
            live = hub.jobs.get(row["id"])
            source = live.follow(after) if live is not None else _stored(row["id"], after)
            async for seq, typ, data in source:
                yield f"id: {seq}\nevent: {typ}\n".encode() + b"data: " + msgspec.json.encode(data) + b"\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)

    async def _stored(job_id: str, after: int) -> AsyncIterator[tuple[int, str, dict]]:
        for event in await store.job_events_after(job_id, after):
            yield event

    # -- nodes and keys -------------------------------------------------------------------

    async def list_nodes(request: Request, key: KeyRecord) -> Response:
        online = hub.nodes
        table = await cp.billing.table()
        data = []
        for row in await store.list_nodes():
            conn = online.get(row["id"])
            rates = pricing.node_rates(table, row["tier"], conn.hello.price if conn else None)
            data.append(
                {
                    "id": row["id"],
                    "name": row["name"],
                    "backend": row["backend"],
                    "tier": row["tier"],
                    "models": [m["name"] for m in row["models"]],
                    "capacity": row["capacity"],
                    "active": len(conn.active) if conn else 0,
                    "status": "online" if conn else "offline",
                    "hardware": row["hardware"],
                    "last_seen": row["last_seen"],
                    "price": {"input": rates.input, "output": rates.output, "unit": "micro-USDC per million tokens"},
                }
            )
        return _json({"object": "list", "data": data})

    async def create_key(request: Request, key: KeyRecord) -> Response:
        raw = await request.body()
        data = schemas.parse(raw, _KeyCreate) if raw.strip() else _KeyCreate()
        rec, plaintext = await store.create_key(data.name, data.role)
        limits = KeyLimits(data.rate_limit, _micro(data.spend_limit, "spend_limit"))
        if limits != KeyLimits():
            await store.set_key_limits(rec.id, limits)
        return _json({"id": rec.id, "name": rec.name, "role": rec.role, "key": plaintext, "created_at": rec.created_at, **_limits_view(limits)}, 201)

    async def list_keys(request: Request, key: KeyRecord) -> Response:
        data = []
        for k in await store.list_keys():
            limits = await store.key_limits(k.id)
            bal = await cp.billing.ledger.client_view(k.id)
            data.append({"id": k.id, "name": k.name, "role": k.role, "created_at": k.created_at, "revoked": k.revoked_at is not None, **_limits_view(limits), "balance": receipts.usdc(bal["available"])})
        return _json({"object": "list", "data": data})

    async def update_key(request: Request, key: KeyRecord) -> Response:
        key_id = request.path_params["key_id"]
        if await store.get_key(key_id) is None:
            raise errors.not_found(f"No key `{key_id}`.", code="key_not_found")
        data = schemas.parse(await request.body(), _KeyLimits)
        current = await store.key_limits(key_id)
        fields = msgspec.structs.asdict(data)
        sent = set(json_keys(await request.body()))
        limits = KeyLimits(
            fields["rate_limit"] if "rate_limit" in sent else current.rate_limit,
            _micro(fields["spend_limit"], "spend_limit") if "spend_limit" in sent else current.spend_limit,
        )
        await store.set_key_limits(key_id, limits)
        cp.billing.forget_key(key_id)  # other replicas see it within 2 s
        return _json({"id": key_id, **_limits_view(limits)})

    async def credit_key(request: Request, key: KeyRecord) -> Response:
        key_id = request.path_params["key_id"]
        if await store.get_key(key_id) is None:
            raise errors.not_found(f"No key `{key_id}`.", code="key_not_found")
        data = schemas.parse(await request.body(), _Credit)
        amount = _micro(data.amount, "amount")
        if amount is None or amount <= 0:
            raise errors.bad_request("`amount` must be a positive USDC amount, e.g. \"10.00\".", param="amount")
        balance = await cp.billing.ledger.credit(key_id, amount)
        return _json({"id": key_id, "credited": receipts.usdc(amount), "balance": receipts.usdc(balance), "balance_micro": balance})

    # -- money ----------------------------------------------------------------------------

    async def platform(request: Request) -> Response:
        table = await cp.billing.table()
        ident = cp.billing.platform
        return _json({"pubkey": ident.pubkey, "npub": ident.npub, "chain": table.chain, "unit": receipts.UNIT})

    async def get_pricing(request: Request, key: KeyRecord) -> Response:
        return _json({"object": "pricing", "unit": "micro-USDC per million tokens", **pricing.encode_table(await cp.billing.table())})

    async def put_pricing(request: Request, key: KeyRecord) -> Response:
        try:
            table = pricing.decode_table(await request.body())
        except ValueError as exc:
            raise errors.bad_request(f"Invalid price table: {exc}", param="pricing") from None
        await cp.billing.set_table(table)
        return _json({"object": "pricing", "unit": "micro-USDC per million tokens", **pricing.encode_table(table)})

    async def balance(request: Request, key: KeyRecord) -> Response:
        key_id = request.query_params.get("key_id") or key.id
        if key_id != key.id and not key.is_admin:
            raise errors.forbidden("Only an admin key may read another key's balance.")
        view = await cp.billing.ledger.client_view(key_id)
        limits = await store.key_limits(key_id)
        table = await cp.billing.table()
        return _json({
            "object": "balance", "key_id": key_id, "unit": receipts.UNIT, **view,
            **{f"{k}_usdc": receipts.usdc(v) for k, v in view.items()},
            "min_balance_usdc": receipts.usdc(table.min_balance), **_limits_view(limits),
        })

    async def job_receipt(request: Request, key: KeyRecord) -> Response:
        row = await settled_job(request.path_params["job_id"], key)
        doc = await cp.billing.ledger.receipt(row["id"])
        if doc is None:
            raise errors.not_found(f"Job `{row['id']}` has no receipt: it is {row['status']}, and only served work is receipted.", code="receipt_not_found")
        return _json(doc)

    async def ledger_check(request: Request, key: KeyRecord) -> Response:
        problems = await cp.billing.ledger.check()
        return _json({"ok": not problems, "problems": problems})

    # -- signed node requests ---------------------------------------------------------------

    def node_endpoint(fn: Callable[[Request, str, bytes], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """A request signed by a node's key (X-Infernet-Auth); the key owns what it touches."""

        async def handler(request: Request) -> Response:
            body = await request.body()
            try:
                signed = await store.check_signed(request.headers.get(auth.AUTH_HEADER), request.method, request.url, body)
            except auth.AuthError as exc:
                return APIError(401, f"Node signature rejected: {exc}.", type="authentication_error", code="invalid_signature").response()
            try:
                return await fn(request, signed.pubkey, body)
            except APIError as exc:
                return exc.response()

        return handler

    async def node_payments(request: Request, pubkey: str, body: bytes) -> Response:
        try:
            limit = min(1000, max(0, int(request.query_params.get("receipts", "20"))))
        except ValueError:
            raise errors.bad_request("`receipts` must be a number.", param="receipts") from None
        ledger = cp.billing.ledger
        view = await ledger.node_view(pubkey)
        docs = await ledger.node_receipts(pubkey, limit=limit) if limit else []
        return _json({"object": "payments", "node_pubkey": pubkey, "unit": receipts.UNIT, **view, **{f"{k}_usdc": receipts.usdc(v) for k, v in view.items() if k != "receipts"}, "data": docs})

    async def node_payout(request: Request, pubkey: str, body: bytes) -> Response:
        data = schemas.parse(body, _PayoutRequest) if body.strip() else _PayoutRequest()
        table = await cp.billing.table()
        ident = cp.billing.platform
        doc = await cp.billing.ledger.payout(pubkey, lambda rec: ident.sign(receipts.digest(rec)), chain=table.chain, platform_pubkey=ident.pubkey, limit=data.limit)
        if doc is None:
            raise errors.not_found("Nothing to claim: this node has no unpaid receipts.", code="nothing_to_claim")
        return _json(doc, 201)

    async def revoke_key(request: Request, key: KeyRecord) -> Response:
        if not await store.revoke_key(request.path_params["key_id"]):
            raise errors.not_found("No such active key.", code="key_not_found")
        return _json({"id": request.path_params["key_id"], "revoked": True})

    async def node_socket(ws: WebSocket) -> None:
        await hub.serve_node(ws)

    # -- app ------------------------------------------------------------------------------

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return APIError(exc.status_code, str(exc.detail), code=code).response()

    async def on_crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path)
        return APIError(500, "Internal error; the control plane logged it.", type="server_error", code="internal_error").response()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.recover()
        if admin_key:
            await store.ensure_key(admin_key, admin_name, "admin")
        reaper = asyncio.create_task(hub.reap())
        try:
            yield
        finally:
            reaper.cancel()
            await hub.aclose()
            await store.close()

    routes = [
        Route("/healthz", healthz),
        Route("/dashboard", dashboard),
        Route("/metrics", endpoint(metrics, admin=True)),
        Route("/v1/models", endpoint(list_models)),
        Route("/v1/chat/completions", endpoint(chat_completions), methods=["POST"]),
        Route("/v1/completions", endpoint(completions), methods=["POST"]),
        Route("/v1/embeddings", endpoint(embeddings), methods=["POST"]),
        Route("/api/v1/jobs", endpoint(create_job), methods=["POST"]),
        Route("/api/v1/jobs", endpoint(list_jobs), methods=["GET"]),
        Route("/api/v1/jobs/{job_id}", endpoint(get_job)),
        Route("/api/v1/jobs/{job_id}/stream", endpoint(stream_job)),
        Route("/api/v1/jobs/{job_id}/cancel", endpoint(cancel_job), methods=["POST"]),
        Route("/api/v1/nodes", endpoint(list_nodes)),
        Route("/api/v1/keys", endpoint(create_key, admin=True), methods=["POST"]),
        Route("/api/v1/keys", endpoint(list_keys, admin=True), methods=["GET"]),
        Route("/api/v1/keys/{key_id}", endpoint(revoke_key, admin=True), methods=["DELETE"]),
        Route("/api/v1/keys/{key_id}", endpoint(update_key, admin=True), methods=["PATCH"]),
        Route("/api/v1/keys/{key_id}/credit", endpoint(credit_key, admin=True), methods=["POST"]),
        Route("/api/v1/balance", endpoint(balance)),
        Route("/api/v1/pricing", endpoint(get_pricing), methods=["GET"]),
        Route("/api/v1/pricing", endpoint(put_pricing, admin=True), methods=["PUT"]),
        Route("/api/v1/platform", platform),
        Route("/api/v1/jobs/{job_id}/receipt", endpoint(job_receipt)),
        Route("/api/v1/ledger/check", endpoint(ledger_check, admin=True)),
        Route("/api/v1/node/payments", node_endpoint(node_payments)),
        Route("/api/v1/node/payouts", node_endpoint(node_payout), methods=["POST"]),
        WebSocketRoute(CONNECT_PATH, node_socket),
        *probe.routes(cp),
    ]
    # Bodies are read whole; a cap keeps one client from exhausting memory (the probe's upload
    # test sends up to 32 MiB).
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: on_http_error, Exception: on_crash}, middleware=[Middleware(BodyLimit, max_bytes=40 * 1024 * 1024)])
    app.state.cp = cp
    return app


Amount = str | Annotated[int, msgspec.Meta(ge=0)]


class _KeyCreate(msgspec.Struct, kw_only=True):
    name: str = ""
    role: str = "client"
    rate_limit: Annotated[int, msgspec.Meta(ge=1)] | None = None  # requests per minute
    spend_limit: Amount | None = None  # USDC per rolling 24 h

    def __post_init__(self) -> None:
        if self.role not in ("client", "admin"):
            raise ValueError("role must be `client` or `admin`")


class _KeyLimits(msgspec.Struct, kw_only=True):
    rate_limit: Annotated[int, msgspec.Meta(ge=1)] | None = None
    spend_limit: Amount | None = None


class _Credit(msgspec.Struct, kw_only=True):
    amount: Amount  # USDC as a decimal string ("10.50"); an integer means whole USDC


class _PayoutRequest(msgspec.Struct, kw_only=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000


def _micro(amount: str | int | None, param: str) -> int | None:
    if amount is None:
        return None
    if isinstance(amount, int):
        return amount * receipts.MICRO
    try:
        return receipts.parse_usdc(amount)
    except ValueError as exc:
        raise errors.bad_request(f"`{param}`: {exc}", param=param) from None


def _limits_view(limits: KeyLimits) -> dict[str, Any]:
    return {"rate_limit": limits.rate_limit, "spend_limit": None if limits.spend_limit is None else receipts.usdc(limits.spend_limit)}


def json_keys(raw: bytes) -> list[str]:
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return []
    return list(data) if isinstance(data, dict) else []


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
