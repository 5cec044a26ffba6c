"""`wavestream serve`: run the HTTP/WebSocket server. Flags override ``WAVESTREAM_*`` env vars."""

from __future__ import annotations

import argparse
import logging

from pydantic import ValidationError

from .processes import serve, serve_processes
from .settings import ServiceSettings

# flag -> settings field; a flag left out keeps the env var / default
FLAGS = {
    "--host": ("host", str, "interface to listen on"),
    "--port": ("port", int, "TCP port"),
    "--max-sessions": ("max_sessions", int, "most concurrent streams (more get 1013 / 503)"),
    "--max-message-bytes": ("max_message_bytes", int, "largest WebSocket message (1009 above)"),
    "--max-upload-mb": ("max_upload_mb", float, "largest REST upload in MiB (413 above)"),
    "--max-upload-seconds": ("max_upload_seconds", float, "longest REST upload in seconds of audio (413 above)"),
    "--idle-timeout": ("idle_timeout", float, "close a WebSocket silent this many seconds (0 = never)"),
    "--send-timeout": ("send_timeout", float, "drop a WebSocket client that reads nothing this many seconds"),
    "--processes": ("processes", int, "server processes sharing the port, each with its own engine (default 1)"),
    "--workers": ("workers", int, "engine worker threads per process (default: one per core)"),
    "--max-batch": ("max_batch", int, "most streams in one model step (1 = per-session, no batching)"),
    "--max-wait-ms": ("max_wait_ms", float, "longest a ready chunk waits for a fuller batch (default: hop/4)"),
    "--data-dir": ("data_dir", str, "directory for async jobs (survives restarts)"),
    "--job-retention-hours": ("job_retention_hours", float, "delete finished jobs this long after (0 = never)"),
    "--max-queued-jobs": ("max_queued_jobs", int, "most jobs queued or running (503 above)"),
    "--shutdown-timeout": ("shutdown_timeout", float, "seconds streams get to finish on shutdown"),
    "--resample-quality": ("resample_quality", str, "resampler of streams at other rates than the model's: LL "
                           "(low latency, the default) or soxr's QQ, LQ, MQ, HQ, VHQ (blocks: more latency, less CPU)"),
}



def replicas(value: str) -> str:
    if value != "auto" and not (value.isdigit() and int(value) >= 1):
        raise argparse.ArgumentTypeError(f"a number of replicas or auto, not {value!r}")
    return value


# Ray-only flag -> (dest, type, help); left out, wavestream.service.ray_serve.build's default holds
RAY_FLAGS = {
    "--replicas": ("replicas", replicas, "replicas, or `auto` to scale on open streams (default 1)"),
    "--max-replicas": ("max_replicas", int, "most replicas with --replicas auto (default 4)"),
    "--num-cpus": ("num_cpus", float, "CPUs Ray reserves for each replica; its engine worker threads (default 1)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, (field, kind, help_text) in FLAGS.items():
        parser.add_argument(flag, dest=field, type=kind, default=None, help=help_text)
    parser.add_argument("--api-key", dest="api_keys", action="append", default=None,
                        help="accepted API key (repeat for several); without any, no authentication")
    parser.add_argument("--allow-untrained", action="store_true", default=None,
                        help="serve models without trained weights (random init; development only)")
    parser.add_argument("--preload", action="append", default=None, help="model to load at start (repeatable)")
    parser.add_argument("--weights", action="append", default=None, metavar="MODEL=PATH",
                        help="serve MODEL with the weights in PATH (safetensors, e.g. converted official "
                             "weights) instead of the shipped ones (repeatable)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    ray = parser.add_argument_group("Ray Serve (the `ray` extra; docs/deployment.md)")
    ray.add_argument("--ray", action="store_true",
                     help="run as replicas on Ray Serve behind Ray's proxy on --host/--port: on the cluster this "
                          "machine joined with `ray start`, else on a Ray instance of its own")
    for flag, (dest, kind, help_text) in RAY_FLAGS.items():
        ray.add_argument(flag, dest=dest, type=kind, default=None, help=help_text)


def settings_from_args(args: argparse.Namespace) -> ServiceSettings:
    fields = [field for field, _, _ in FLAGS.values()] + ["api_keys", "preload", "weights", "allow_untrained"]
    overrides = {f: getattr(args, f) for f in fields if getattr(args, f, None) is not None}
    return ServiceSettings(**overrides)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        print(f"wavestream serve: bad settings:\n{exc}")
        return 2
    ray_args = {dest: getattr(args, dest) for dest, _, _ in RAY_FLAGS.values() if getattr(args, dest, None) is not None}
    if ray_args and not args.ray:
        flags = [flag for flag, (dest, _, _) in RAY_FLAGS.items() if dest in ray_args]
        print(f"wavestream serve: {', '.join(flags)} only with --ray")
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.ray:
        if settings.processes > 1:
            print("wavestream serve: --processes is for one machine without Ray; with --ray use --replicas")
            return 2
        return run_ray(settings, ray_args)
    if settings.processes > 1:
        return serve_processes(settings, settings.processes, args.log_level)
    try:
        serve(settings, args.log_level)
    except ValueError as exc:  # settings the engine refuses, e.g. weights for an unknown model
        print(f"wavestream serve: bad settings: {exc}")
        return 2
    return 0


def run_ray(settings: ServiceSettings, ray_args: dict) -> int:
    try:
        from .ray_serve import run_in_foreground
    except ModuleNotFoundError as exc:
        print(f"wavestream serve --ray: {exc.name} is missing; install the `ray` extra (pip install -e '.[ray]')")
        return 2
    try:
        run_in_foreground(settings, ray_args)
    except ValueError as exc:  # settings the builder refuses
        print(f"wavestream serve --ray: bad settings: {exc}")
        return 2
    except KeyboardInterrupt:
        pass  # Ctrl+C or SIGTERM: the app was removed
    return 0
