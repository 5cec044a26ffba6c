"""The FastAPI application: WebSocket streaming, REST processing, async jobs, health and metrics.

``create_app(settings)`` builds one self-contained service (its own engine, metrics registry and
job store). The engine starts in the lifespan; `wavestream serve` runs the app under
``WavestreamServer``, which lets live streams finish cleanly before uvicorn closes connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request, WebSocket
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.background import BackgroundTask

from wavestream.engine import CapacityError, Engine
from wavestream.models.registry import model_names

from .audio_files import (
    EVENTS_FORMAT,
    OUTPUT_FORMATS,
    decode_file,
    encode_file,
    process_file,
    spool_upload,
    validate_token_upload,
    validate_upload,
)
from .jobs import JobBusy, JobRunner, JobStatus, JobStore, spool_dir
from .metrics import ServiceMetrics
from .protocol import load_json
from .settings import ServiceSettings
from .websocket import StreamHandler

log = logging.getLogger(__name__)
STATIC = resources.files("wavestream.service") / "static"
AUDIO_TYPES = ("audio/wav", "audio/flac", "audio/ogg", "application/octet-stream")
AUDIO_BODY = {"requestBody": {"required": True, "description": "the audio file (WAV, FLAC or Ogg) as the raw body",
                              "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in AUDIO_TYPES}}}
FORMAT_HELP = "wav or flac for audio models (default wav); json for events models (their default)"
TOKEN_FILE_TYPE = "application/octet-stream"  # a .wsc token file
#: in a server group, how often each server writes its count of open sessions to the group's metrics
SESSIONS_PUBLISH_SECONDS = 0.5


ERRORS = {400: "Empty request body", 401: "Missing or wrong API key", 404: "No such model or job",
          409: "The job is not in a state for this", 413: "Upload over the size or duration limit",
          415: "Not a readable WAV, FLAC or Ogg file", 422: "Invalid parameters or audio",
          503: "At capacity or shutting down; retry later"}


class ErrorBody(BaseModel):
    detail: str


def errors(*codes: int) -> dict:
    """OpenAPI ``responses`` for these error statuses (their body is ``{"detail": "..."}``)."""
    return {code: {"model": ErrorBody, "description": ERRORS[code]} for code in codes}


class Service:
    """Everything one app instance owns; reachable from requests as ``app.state.service``."""

    def __init__(self, settings: ServiceSettings, metrics_dir: Path | None = None):
        """``metrics_dir``: the metrics directory of the server group this one belongs to
        (``wavestream serve --processes N``; see metrics.py), or None for a server on its own."""
        self.settings = settings
        self.metrics = ServiceMetrics(metrics_dir)
        self.engine = Engine(max_batch=settings.max_batch, workers=settings.workers,
                             max_wait=None if settings.max_wait_ms is None else settings.max_wait_ms / 1000,
                             max_sessions=settings.max_sessions, on_batch=self.metrics.observe_batch,
                             allow_untrained=settings.allow_untrained, weights=settings.weights,
                             quality=settings.resample_quality)
        if metrics_dir is None:
            self.metrics.active_sessions.set_function(lambda: self.engine.active_sessions)
        self._publisher: asyncio.Task | None = None  # in a group: writes the session count (start)
        self.jobs = JobStore(settings.data_dir, retention=3600 * settings.job_retention_hours)
        self.job_runner = JobRunner(self.jobs, self.process_job)
        self.spool: Path | None = None  # this server's upload directory (data_dir/tmp/<random>), from start
        self._spool_claim = None
        self.model_names = model_names()
        self._descriptions: dict[str, dict] = {}
        self.handlers: set[StreamHandler] = set()
        self.started = False
        self.draining = False

    # -- life cycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        # servers sharing data_dir (Ray replicas) each receive uploads into a directory of their own;
        # what killed servers were receiving belongs to no request now and is removed
        self.spool, self._spool_claim = await asyncio.to_thread(spool_dir, self.settings.data_dir / "tmp")
        await self.engine.start()
        for name in self.settings.preload:
            await self.load(name)
        await self.job_runner.start()
        if self.metrics.group_dir is not None:
            # a function gauge is computed only by a scrape of this process; the group's scrapes
            # read the count from this server's metric file, so it is written there as it goes
            self._publisher = asyncio.create_task(self._publish_sessions(), name="wavestream-metrics")
        self.started = True

    async def _publish_sessions(self) -> None:
        while True:
            self.metrics.active_sessions.set(self.engine.active_sessions)
            await asyncio.sleep(SESSIONS_PUBLISH_SECONDS)

    async def drain(self, timeout: float | None = None) -> None:
        """Graceful stop of streaming: refuse new streams, let every live one send its final output
        and ``done`` (close 1001); after ``timeout`` seconds the stragglers are left to uvicorn."""
        self.draining = True
        for handler in list(self.handlers):
            handler.stop()
        deadline = time.monotonic() + (self.settings.shutdown_timeout if timeout is None else timeout)
        while self.handlers and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        await self.drain()
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
        await self.job_runner.stop()
        await self.engine.aclose()
        if self._spool_claim is not None:
            self._spool_claim.release()
        self.started = False

    # -- helpers -------------------------------------------------------------------------------
    async def load(self, name: str, params: dict | None = None) -> None:
        """Load a model (weights from disk, building it) on a worker thread, never on the event loop;
        ValueError / UntrainedModelError as ``Engine.load``."""
        await asyncio.to_thread(self.engine.load, name, params)

    def authorized(self, headers, query_params) -> bool:
        keys = self.settings.api_keys
        if not keys:
            return True
        auth = headers.get("authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else query_params.get("api_key", "")
        return any(hmac.compare_digest(given.encode(), key.encode()) for key in keys)

    async def describe(self, name: str) -> dict:
        """``Engine.describe`` (which builds the model) on a worker thread, once per model."""
        if name not in self._descriptions:
            self._descriptions[name] = await asyncio.to_thread(self.engine.describe, name)
        return self._descriptions[name]

    async def process_job(self, model: str, params: dict, source: Path, target: Path) -> None:
        fmt = target.suffix.lstrip(".")
        while True:
            try:
                seconds = await process_file(self.engine, model, params, source, target, fmt)
                break
            except CapacityError:
                await asyncio.sleep(1.0)  # a job waits for a free session instead of failing
        self.metrics.audio_seconds.labels(model, "job").inc(seconds)


def create_app(settings: ServiceSettings | None = None, metrics_dir: Path | None = None) -> FastAPI:
    """The app; ``metrics_dir`` as ``Service``."""
    settings = settings or ServiceSettings()
    service = Service(settings, metrics_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="wavestream", version="1", lifespan=lifespan,
                  description="Streaming audio processing: WebSocket protocol v1 at /v1/stream "
                              "(docs/protocol.md), file processing and async jobs over REST.")
    app.state.service = service

    def require_key(request: Request) -> None:
        if not service.authorized(request.headers, request.query_params):
            raise HTTPException(401, "missing or wrong API key (Authorization: Bearer KEY or ?api_key=KEY)",
                                headers={"WWW-Authenticate": "Bearer"})

    # a dependency, so that it runs before the query parameters are validated: 401 before 422
    auth = [Depends(require_key)]

    def check_model(name: str) -> None:
        if name not in service.model_names:
            raise HTTPException(404, f"unknown model {name!r}; available: {', '.join(service.model_names)}")

    def parse_params(params: str | None) -> dict[str, Any]:
        if not params:
            return {}
        try:
            value = load_json(params)
        except ValueError as exc:
            raise HTTPException(422, f"params must be a JSON object: {exc}") from None
        if not isinstance(value, dict):
            raise HTTPException(422, "params must be a JSON object")
        return value

    async def output_format(model: str, fmt: str | None) -> str:
        """The asked format, or the model's default: a JSON list for events models, WAV otherwise."""
        if fmt is None:
            return EVENTS_FORMAT if (await service.describe(model))["output"] == "events" else "wav"
        if fmt not in OUTPUT_FORMATS:
            raise HTTPException(422, f"format must be one of {', '.join(OUTPUT_FORMATS)}, got {fmt!r}")
        return fmt

    async def receive_upload(request: Request):
        path = await spool_upload(request, service.spool, settings.max_upload_bytes)
        try:
            return validate_upload(path, settings.max_upload_seconds)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    # -- pages and probes ----------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text())

    # the page's ES modules and AudioWorklet code, served as they are (no build step)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses=errors(503))
    async def readyz() -> JSONResponse:
        ready = service.started and not service.draining
        body = {"status": "ready" if ready else "not ready", "active_sessions": service.engine.active_sessions,
                "max_sessions": settings.max_sessions, "draining": service.draining}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text exposition format"}})
    async def metrics() -> Response:
        for status, count in (await asyncio.to_thread(service.jobs.counts)).items():
            service.metrics.jobs.labels(status).set(count)
        if service.metrics.group_dir is None:
            body = service.metrics.render()
        else:  # the whole group's figures (metrics.py): this server's sessions as of now, then every
            # server's files read and summed on a thread, not on the event loop
            service.metrics.active_sessions.set(service.engine.active_sessions)
            body = await asyncio.to_thread(service.metrics.render)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    # -- REST ------------------------------------------------------------------------------------
    @app.get("/v1/models", tags=["models"], dependencies=auth, responses=errors(401))
    async def list_models() -> dict:
        return {"models": [await service.describe(name) for name in service.model_names]}

    async def respond(work, upload_path: Path, target: Path, media_type: str, filename: str) -> FileResponse:
        """Run ``work`` (which writes ``target``) and answer with the file: 503 at capacity, 422 for bad input."""
        try:
            await work
        except BaseException as exc:
            target.unlink(missing_ok=True)
            if isinstance(exc, CapacityError):
                raise HTTPException(503, f"{exc}; try again later", headers={"Retry-After": "1"}) from None
            if isinstance(exc, ValueError):
                raise HTTPException(422, str(exc)) from None
            raise
        finally:
            upload_path.unlink(missing_ok=True)
        return FileResponse(target, media_type=media_type, filename=filename,
                            background=BackgroundTask(target.unlink, missing_ok=True))

    @app.post("/v1/process/{model}", tags=["process"], openapi_extra=AUDIO_BODY, response_class=FileResponse,
              dependencies=auth, responses={
                  200: {"content": {"audio/wav": {}, "audio/flac": {}, "application/json": {}}},
                  **errors(400, 401, 404, 413, 415, 422, 503)})
    async def process(request: Request, model: str, format: str | None = Query(None, description=FORMAT_HELP),
                      params: str | None = Query(None, description="model params as a JSON object")):
        """Process one file and return the result in the same sample rate (and channels for audio);
        events models return the JSON list of their detections."""
        check_model(model)
        format = await output_format(model, format)
        model_params = parse_params(params)
        upload = await receive_upload(request)
        target = upload.path.with_name(upload.path.name + "-out." + format)
        response = await respond(process_file(service.engine, model, model_params, upload.path, target, format),
                                 upload.path, target, OUTPUT_FORMATS[format][2], f"{model}.{format}")
        service.metrics.audio_seconds.labels(model, "process").inc(upload.duration)
        return response

    @app.post("/v1/encode/{model}", tags=["codec"], openapi_extra=AUDIO_BODY, response_class=FileResponse,
              dependencies=auth, responses={200: {"content": {TOKEN_FILE_TYPE: {}}},
                                            **errors(400, 401, 404, 413, 415, 422, 503)})
    async def encode(request: Request, model: str,
                     params: str | None = Query(None, description='codec params, e.g. {"bitrate": 3}')):
        """Encode an audio file into a codec token file (.wsc: a small header and the packed codes, see
        docs/protocol.md); ``POST /v1/decode`` turns it back into audio."""
        check_model(model)
        model_params = parse_params(params)
        try:
            if "mode" in model_params:
                raise ValueError("/v1/encode sets the mode itself (encode); a round trip is /v1/process")
            await service.load(model, {**model_params, "mode": "encode"})  # bad params fail before the upload
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        upload = await receive_upload(request)
        target = upload.path.with_name(upload.path.name + "-out.wsc")
        response = await respond(encode_file(service.engine, model, model_params, upload.path, target),
                                 upload.path, target, TOKEN_FILE_TYPE, f"{model}.wsc")
        service.metrics.audio_seconds.labels(model, "encode").inc(upload.duration)
        return response

    @app.post("/v1/decode", tags=["codec"], response_class=FileResponse, dependencies=auth,
              openapi_extra={"requestBody": {"required": True, "description": "a token file (.wsc) as the raw body",
                                             "content": {TOKEN_FILE_TYPE: {"schema": {"type": "string",
                                                                                      "format": "binary"}}}}},
              responses={200: {"content": {"audio/wav": {}, "audio/flac": {}}},
                         **errors(400, 401, 413, 422, 503)})
    async def decode(request: Request, format: str = Query("wav", description="wav or flac")):
        """Decode a token file with the model its header names, into audio at the rate and length of
        the file that was encoded."""
        if format not in ("wav", "flac"):
            raise HTTPException(422, f"format must be wav or flac, got {format!r}")
        path = await spool_upload(request, service.spool, settings.max_upload_bytes)
        try:
            header = validate_token_upload(path, settings.max_upload_seconds, service.model_names)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        target = path.with_name(path.name + "-out." + format)
        response = await respond(decode_file(service.engine, path, target, format), path, target,
                                 OUTPUT_FORMATS[format][2], f"{header.model}.{format}")
        service.metrics.audio_seconds.labels(header.model, "decode").inc(header.seconds)
        return response

    @app.post("/v1/jobs", tags=["jobs"], status_code=202, openapi_extra=AUDIO_BODY, dependencies=auth,
              responses=errors(400, 401, 404, 413, 415, 422, 503))
    async def create_job(request: Request, model: str = Query(..., description="model name"),
                         format: str | None = Query(None, description=FORMAT_HELP),
                         params: str | None = Query(None, description="model params as a JSON object")) -> dict:
        """Queue a file for processing; poll ``GET /v1/jobs/{id}`` and download ``result_url``."""
        check_model(model)
        format = await output_format(model, format)
        model_params = parse_params(params)
        pending = await asyncio.to_thread(service.jobs.counts)
        if pending["queued"] + pending["running"] >= settings.max_queued_jobs:
            raise HTTPException(503, f"the job queue is full ({settings.max_queued_jobs} jobs); try again later",
                                headers={"Retry-After": "10"})
        try:
            await service.load(model, model_params)  # bad params fail now, not later in the job
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        upload = await receive_upload(request)
        job = await asyncio.to_thread(service.jobs.create, model, model_params, format, upload.path,
                                      upload.suffix, upload.duration)
        service.job_runner.submit(job)
        return job.public()

    async def get_job(job_id: str):
        try:
            return await asyncio.to_thread(service.jobs.get, job_id)
        except KeyError:
            raise HTTPException(404, f"no job {job_id!r}") from None

    @app.get("/v1/jobs", tags=["jobs"], dependencies=auth, responses=errors(401, 422))
    async def list_jobs(status: Annotated[JobStatus | None, Query(description="only jobs with this status")] = None,
                        limit: Annotated[int, Query(ge=1, le=1000, description="at most this many, newest first")] = 100
                        ) -> dict:
        """The jobs of this server (of every server sharing its data directory), newest first."""
        return {"jobs": [job.public() for job in (await asyncio.to_thread(service.jobs.jobs, status))[:limit]]}

    @app.get("/v1/jobs/{job_id}", tags=["jobs"], dependencies=auth, responses=errors(401, 404))
    async def job_status(job_id: str) -> dict:
        return (await get_job(job_id)).public()

    @app.delete("/v1/jobs/{job_id}", tags=["jobs"], status_code=204, dependencies=auth,
                responses=errors(401, 404, 409))
    async def delete_job(job_id: str) -> Response:
        """Delete a finished or queued job with its files (finished jobs also expire on their own)."""
        try:
            await asyncio.to_thread(service.jobs.delete, job_id)
        except KeyError:
            raise HTTPException(404, f"no job {job_id!r}") from None
        except JobBusy as exc:
            raise HTTPException(409, str(exc)) from None
        return Response(status_code=204)

    @app.get("/v1/jobs/{job_id}/result", tags=["jobs"], response_class=FileResponse, dependencies=auth,
             responses=errors(401, 404, 409))
    async def job_result(job_id: str):
        job = await get_job(job_id)
        if job.status != "done":
            raise HTTPException(409, f"job {job_id} is {job.status}" + (f": {job.error}" if job.error else ""))
        return FileResponse(service.jobs.result_path(job), media_type=OUTPUT_FORMATS[job.format][2],
                            filename=f"{job.model}-{job.id}.{job.format}")

    # -- streaming -------------------------------------------------------------------------------
    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        handler = StreamHandler(ws, service)
        service.handlers.add(handler)
        try:
            await handler.run()
        finally:
            service.handlers.discard(handler)

    return app


class WavestreamServer(uvicorn.Server):
    """uvicorn, except that on shutdown live streams get to send their final output first.

    uvicorn closes every WebSocket with 1012 as soon as it shuts down; we first drain the service
    (each stream: tail, ``done``, close 1001), then let uvicorn go on. The listener stays open while
    draining, so that load balancers see ``/readyz`` answer 503 and new streams get 1013
    ``shutting_down`` instead of a refused connection.
    """

    def __init__(self, config: uvicorn.Config, service: Service):
        super().__init__(config)
        self.service = service
        #: called once it listens, before the loop runs any connection's handler (processes.py)
        self.on_started: Callable[[], None] | None = None

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started and self.on_started is not None:
            self.on_started()

    async def shutdown(self, sockets=None) -> None:
        deadline = time.monotonic() + self.service.settings.shutdown_timeout
        await self.service.drain()
        # a drained stream's closing handshake may still be under way: a client sending faster than
        # real time has audio queued ahead of its close reply. Closing such a socket now, with that
        # audio unread, resets the connection, and the client loses the ``done`` it has not read yet
        while time.monotonic() < deadline and any(
                getattr(connection, "close_sent", False) for connection in self.server_state.connections):
            await asyncio.sleep(0.02)
        await super().shutdown(sockets)


def make_server(settings: ServiceSettings, metrics_dir: Path | None = None, **config) -> WavestreamServer:
    """A server for a new app with ``settings`` (``metrics_dir`` as ``Service``); its transport frame
    limit sits above ours so that an oversized message still gets a JSON error before the 1009 close."""
    app = create_app(settings, metrics_dir)
    # no permessage-deflate: PCM barely compresses, and zlib would cost more CPU than the model step
    cfg = uvicorn.Config(app, host=settings.host, port=settings.port, ws_max_size=settings.ws_frame_limit,
                         ws_per_message_deflate=False, timeout_graceful_shutdown=settings.shutdown_timeout + 5,
                         **config)
    return WavestreamServer(cfg, app.state.service)
