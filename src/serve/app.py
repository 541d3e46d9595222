"""The FastAPI application (``create_app``) and ``speakerops serve`` (``run``).

Routes (JSON; the OpenAPI page is ``/docs``, the schema ``/openapi.json``)::

    POST   /v1/{tenant}/speakers/{speaker_id}/enroll   multipart: files (1..max_files), mode
    POST   /v1/{tenant}/verify                         multipart: speaker_id, file, p_target?
    POST   /v1/{tenant}/identify                       multipart: file, top_k?, p_target?
    DELETE /v1/{tenant}/speakers/{speaker_id}                  also its log rows and retained audio
    POST   /admin/reload                               follow serve.model's alias (admin token)
    GET    /healthz  /readyz  /metrics

Every ``/v1/{tenant}`` route needs ``Authorization: Bearer <token of that tenant>`` (401 without
a valid token, 403 with another tenant's; ``/admin`` routes an admin token). A route reads the
served model (``app.state.service``) once per request: a reload swaps it whole (:mod:`.reload`).
Every refusal is ``{"error": {"code", "message",
...}}`` with a 4xx status naming the problem.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Header, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from omegaconf import DictConfig

from speakerops.core.keys import KeyMaterialError, Keyring, keyring_from_cfg
from speakerops.core.mlflow import client as mlflow_client
from speakerops.core.paths import tracking_uri
from speakerops.serve.audit import AuditTrail
from speakerops.serve.engine import Service
from speakerops.serve.errors import ServeError
from speakerops.serve.intake import check_content_type
from speakerops.serve.metrics import Metrics
from speakerops.serve.reload import Reloader, load_model
from speakerops.serve.settings import ServeSettings
from speakerops.serve.spoof import SpoofCheck
from speakerops.serve.store import TemplateStore
from speakerops.serve.tokens import ADMIN, TokenBook, check_tenant

API_VERSION = "v1"
# the bearer token header of every /v1 route (module level: FastAPI resolves annotations here)
Auth = Annotated[str | None, Header(description="Bearer <token of the tenant>")]


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413 (by its
    Content-Length, or while it streams in), before anything reads it whole."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def _refuse(self, send: Any, size: str) -> None:
        body = json.dumps(
            {
                "error": {
                    "code": "upload.too_large",
                    "message": f"request body {size} > serve.upload.max_bytes={self.max_bytes} bytes",
                    "limit": self.max_bytes,
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send, f"of {int(length)} bytes")
            return
        seen = 0
        started = False

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, f"over {self.max_bytes} bytes (streamed)")


def _read(upload: UploadFile, allowed: tuple[str, ...]) -> tuple[str, bytes]:
    name = upload.filename or "upload"
    check_content_type(name, upload.content_type, allowed)
    return name, upload.file.read()


def create_app(
    cfg: DictConfig,
    *,
    encoder: Any = None,
    model_name: str | None = None,
    model_version: str | None = None,
    keyring: Keyring | None = None,
) -> FastAPI:
    """The app for a composed config; `encoder` (with its name and version) skips loading
    ``serve.model`` (tests, embedding the service)."""
    settings = ServeSettings.from_cfg(cfg)
    uri = tracking_uri(cfg.paths.registry_dir)
    keyring = keyring or keyring_from_cfg(cfg)
    trail = AuditTrail(settings.audit_log, keyring)  # a given encoder: no registered model
    if encoder is None:
        encoder, model_name, model_version = load_model(settings.model, uri)
        if model_version != "local":  # a registered model: the head is anchored on it
            trail = AuditTrail(
                settings.audit_log,
                keyring,
                client=mlflow_client(cfg.paths.registry_dir),
                model_name=model_name,
            )
    if not model_name or not model_version:
        raise ValueError("create_app: pass model_name and model_version with an encoder")
    metrics = Metrics()
    store = TemplateStore(settings.store_url, keyring)
    metrics.count_templates_with(store.counts_by_version)
    tokens = TokenBook(settings.tokens)
    service = Service(
        settings,
        encoder,
        model_name=str(model_name),
        model_version=str(model_version),
        keyring=keyring,
        store=store,
        metrics=metrics,
        audit=trail,
        spoof=SpoofCheck.from_settings(
            settings, tracking_uri=uri, speaker=(str(model_name), str(model_version))
        ),
    )
    reloader = Reloader(None, uri)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reloader.start(settings.reload_poll_s)
        yield
        reloader.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="speakerops verification service",
        version=API_VERSION,
        description=(
            f"Speaker enrollment, verification and open-set identification with calibrated "
            f"decisions. Model {model_name} version {model_version}; operating point "
            f"{service.operating_point} (LLR threshold {service.threshold:.3f})."
        ),
    )
    app.state.service, app.state.tokens, app.state.metrics = service, tokens, metrics
    reloader.state = app.state
    allowed = settings.content_types
    worker = str(os.getpid())

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(KeyMaterialError)
    async def _key_error(request: Request, exc: KeyMaterialError) -> JSONResponse:
        return JSONResponse({"error": {"code": "keys", "message": str(exc)}}, status_code=500)

    @app.middleware("http")
    async def _timing(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        metrics.observe(endpoint, response.status_code, time.perf_counter() - start)
        response.headers["x-speakerops-worker"] = worker  # which process (serve.workers > 1)
        return response

    def auth(tenant: str, authorization: str | None) -> str:
        try:  # before the token: `/v1/@admin/...` is no tenant's route
            check_tenant(tenant)
        except ValueError as exc:
            raise ServeError(404, "tenant.invalid", str(exc)) from exc
        return tokens.authenticate(tenant, authorization)

    def admin(authorization: str | None) -> str:
        return tokens.authenticate(ADMIN, authorization)

    @app.post(f"/{API_VERSION}/{{tenant}}/speakers/{{speaker_id}}/enroll")
    def enroll(
        tenant: str,
        speaker_id: str,
        files: Annotated[list[UploadFile], File(description="one or more utterances")],
        authorization: Auth = None,
        mode: Annotated[str, Form(description="replace | add")] = "replace",
        channel: Annotated[str | None, Form()] = None,
    ) -> dict:
        token_id = auth(tenant, authorization)
        uploads = [_read(f, allowed) for f in files]
        return app.state.service.enroll(tenant, token_id, speaker_id, uploads, mode, channel)

    @app.post(f"/{API_VERSION}/{{tenant}}/verify")
    def verify(
        tenant: str,
        speaker_id: Annotated[str, Form(description="the claimed speaker")],
        file: Annotated[UploadFile, File(description="the test utterance")],
        authorization: Auth = None,
        p_target: Annotated[float | None, Form(description="a stricter operating point")] = None,
        channel: Annotated[str | None, Form()] = None,
    ) -> dict:
        auth(tenant, authorization)
        return app.state.service.verify(tenant, speaker_id, _read(file, allowed), p_target, channel)

    @app.post(f"/{API_VERSION}/{{tenant}}/identify")
    def identify(
        tenant: str,
        file: Annotated[UploadFile, File(description="the test utterance")],
        authorization: Auth = None,
        top_k: Annotated[int | None, Form()] = None,
        p_target: Annotated[float | None, Form(description="a stricter operating point")] = None,
        channel: Annotated[str | None, Form()] = None,
    ) -> dict:
        auth(tenant, authorization)
        return app.state.service.identify(tenant, _read(file, allowed), top_k, p_target, channel)

    @app.delete(f"/{API_VERSION}/{{tenant}}/speakers/{{speaker_id}}")
    def delete(tenant: str, speaker_id: str, authorization: Auth = None) -> dict:
        token_id = auth(tenant, authorization)
        return app.state.service.delete(tenant, token_id, speaker_id)

    @app.post("/admin/reload")
    def admin_reload(authorization: Auth = None) -> dict:
        """Follow ``serve.model`` (e.g. the champion alias) now; see :mod:`.reload`."""
        token_id = admin(authorization)
        return reloader.reload(tenant=ADMIN, token_id=token_id, trigger="admin")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        service = app.state.service
        try:
            store.ping()
        except Exception as exc:  # noqa: BLE001 - any store failure means not ready
            return JSONResponse({"ready": False, "store": str(exc)}, status_code=503)
        return JSONResponse(
            {
                "ready": True,
                "model_name": service.model_name,
                "model_version": service.model_version,
                "store": "ok",
            }
        )

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    app.add_middleware(BodyLimit, max_bytes=settings.max_bytes)
    return app


WORKER_CONFIG_ENV = "SPEAKEROPS_SERVE_CONFIG"  # the composed config, to each worker process


def worker_app() -> FastAPI:
    """The app of one worker process of ``serve.workers > 1`` (uvicorn's factory): the config
    :func:`run` composed, passed on in :data:`WORKER_CONFIG_ENV`."""
    from omegaconf import OmegaConf

    from speakerops.core.env import apply_threads

    text = os.environ.get(WORKER_CONFIG_ENV)
    if not text:
        raise RuntimeError(f"{WORKER_CONFIG_ENV} is not set: start workers with `speakerops serve`")
    cfg = OmegaConf.create(text)
    apply_threads(cfg.runtime.threads)
    return create_app(cfg)


def run(cfg: DictConfig) -> None:
    """``speakerops serve``: uvicorn on ``serve.host:serve.port`` (127.0.0.1 by default), in
    ``serve.workers`` processes."""
    import uvicorn  # start-up cost: only the serving command needs it
    from omegaconf import OmegaConf

    settings = ServeSettings.from_cfg(cfg)
    if settings.workers == 1:
        app = create_app(cfg)
        print(f"speakerops serve: http://{settings.host}:{settings.port}/docs", flush=True)
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
        return
    create_app(cfg)  # a bad model, store, key or token file fails here, once, before forking
    os.environ[WORKER_CONFIG_ENV] = OmegaConf.to_yaml(cfg, resolve=True)
    print(
        f"speakerops serve: http://{settings.host}:{settings.port}/docs "
        f"({settings.workers} worker processes)",
        flush=True,
    )
    uvicorn.run(
        "speakerops.serve.app:worker_app",
        factory=True,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        log_level="info",
    )
