"""Scale-out on Ray Serve: the whole wavestream app (WebSocket streams, REST, metrics, page) as the
replicas of one Serve deployment behind Ray's HTTP proxy, on one machine or a Ray cluster.

Each replica is one complete service (its own engine batching its own streams), configured by the
same ``WAVESTREAM_*`` settings as `wavestream serve`; Ray routes each new connection or request to
a replica. A WebSocket stream is one ongoing request for as long as it lasts, so
``max_ongoing_requests`` is the replica's stream slots (``max_sessions``) plus a few for REST and
probes: Ray sends no more than that to a replica, prefers the less busy one, and a replica that is
full of streams still answers 1013 ``at_capacity`` itself. With ``replicas="auto"`` Serve scales
on ongoing requests, i.e. open streams. Async jobs live in ``data_dir``, shared by all replicas:
any replica answers for any job, and the replicas' job runners share the work.

    wavestream serve --ray --replicas 2 --max-sessions 64     # in the foreground, like `serve`
    serve deploy docker/ray-serve.yaml                        # a lasting deployment on a cluster

``build`` is the application builder (of the config file): its arguments are ``replicas`` (a
number or ``auto``), ``max_replicas`` (with ``auto``), ``num_cpus`` (CPUs Ray reserves per
replica) and any setting (``max_sessions``, ``preload``, ``api_keys``, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

import ray
from fastapi import FastAPI
from ray import serve

from .app import Service, create_app
from .settings import ServiceSettings

#: requests a replica takes beyond its stream slots: REST calls, probes, /metrics
EXTRA_REQUESTS = 8
#: autoscaling keeps this share of each replica's stream slots in use
TARGET_SHARE = 0.5
#: seconds between a replica's looks at whether its application is being deleted
WATCH_SECONDS = 1.0

log = logging.getLogger(__name__)


def replica_app() -> FastAPI:
    """The app of one replica, built on the replica from its ``WAVESTREAM_*`` environment.

    Every replica uses the same ``data_dir``: Ray sends a job's requests to any replica, so all of
    them must see every job, and their job runners share the queue (wavestream/service/jobs.py).
    On a cluster of several machines, ``data_dir`` must be a shared file system with locks."""
    app = create_app(ServiceSettings())
    serve_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async with serve_lifespan(app):
            watcher = asyncio.create_task(drain_when_deleted(app.state.service), name="wavestream-ray-watch")
            try:
                yield
            finally:
                watcher.cancel()

    app.router.lifespan_context = lifespan
    return app


async def drain_when_deleted(service: Service) -> None:
    """Drain this replica's streams (final output, ``done`` with reason shutdown, close 1001) once
    its application is being deleted (`wavestream serve --ray` stopped, `serve delete`).

    Ray stops a replica only after its ongoing requests end, and it tells the app nothing before
    that (the ASGI lifespan shutdown, which drains, comes after): an open stream is an ongoing
    request, so without this the replica would wait for its streams until
    ``graceful_shutdown_timeout_s`` and then be killed with them. Serve's status is the public
    place that says so; it names no replica, so a replica Ray removes while the application stays
    (scaling down, an update) is not drained (docs/deployment.md)."""
    app_name = serve.get_replica_context().app_name
    while True:
        await asyncio.sleep(WATCH_SECONDS)
        try:
            status = await asyncio.to_thread(serve.status)
        except Exception:  # the controller restarting: look again later
            log.debug("serve.status() failed", exc_info=True)
            continue
        app = status.applications.get(app_name)
        if app is not None and app.status == "DELETING":
            log.info("application %s is being deleted: draining this replica's streams", app_name)
            await service.drain()
            return


@serve.deployment(name="wavestream")
@serve.ingress(replica_app)
class Wavestream:
    """One replica: a complete wavestream service."""


def deployment_options(args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Serve deployment options and the replicas' environment for builder ``args`` (see module doc)."""
    args = dict(args)
    replicas = str(args.pop("replicas", "1"))
    max_replicas = int(args.pop("max_replicas", 4))
    num_cpus = float(args.pop("num_cpus", 1))
    settings = ServiceSettings(**args)  # validate here, before any replica starts
    env = {f"WAVESTREAM_{key.upper()}": env_value(value) for key, value in args.items()}
    # the engine's worker threads follow the CPUs Ray gives the replica, not the machine's core count
    env.setdefault("WAVESTREAM_WORKERS", str(max(1, int(num_cpus))))
    options: dict[str, Any] = {
        "max_ongoing_requests": settings.max_sessions + EXTRA_REQUESTS,
        "ray_actor_options": {"num_cpus": num_cpus, "runtime_env": {"env_vars": env}},
        "graceful_shutdown_timeout_s": settings.shutdown_timeout + 5,
    }
    if replicas == "auto":
        options["num_replicas"] = "auto"
        options["autoscaling_config"] = {
            "min_replicas": 1, "max_replicas": max_replicas,
            "target_ongoing_requests": max(1.0, TARGET_SHARE * settings.max_sessions),
        }
    else:
        options["num_replicas"] = int(replicas)
    return options, env


def env_value(value: Any) -> str:
    """A setting as its ``WAVESTREAM_*`` variable writes it: lists comma-separated, weights MODEL=PATH."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return ",".join(f"{key}={item}" for key, item in value.items())
    return str(value)


def build(args: dict[str, Any]) -> serve.Application:
    """Application builder for `serve run` and Serve config files."""
    options, _ = deployment_options(args)
    return Wavestream.options(**options).bind()


def stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt  # the orchestrator's stop ends the app like Ctrl+C


def run_in_foreground(settings: ServiceSettings, ray_args: dict[str, Any]) -> None:
    """`wavestream serve --ray`: deploy the app on Ray Serve with Ray's HTTP proxy on ``settings.host``
    and ``port``, and remove it again on Ctrl+C or SIGTERM. Ray is the cluster this machine joined
    with `ray start` (or ``RAY_ADDRESS``); without one, a Ray instance of its own on this machine."""
    # the replicas get every setting given (flag or variable), since on a cluster they do not
    # inherit this process's environment; host and port are the proxy's, not theirs. Paths are
    # made absolute: a replica's working directory is Ray's, not ours
    given = settings.model_dump(mode="json", include=settings.model_fields_set - {"host", "port"})
    given["data_dir"] = str(settings.data_dir.resolve())
    if "weights" in given:
        given["weights"] = {name: str(path.resolve()) for name, path in settings.weights.items()}
    app = build({**given, **ray_args})  # ray_args: replicas, max_replicas, num_cpus (as build's)
    ray.init()
    signal.signal(signal.SIGTERM, stop_on_sigterm)  # after ray.init, which sets its own handler
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(app, name="wavestream", route_prefix="/")
        while True:
            time.sleep(1)
    finally:
        # only this app: on a shared cluster, Serve and other applications stay
        with contextlib.suppress(Exception):  # nothing to delete when the start failed
            serve.delete("wavestream")
        ray.shutdown()

