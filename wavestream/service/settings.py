"""Service settings: every limit in one place, from ``WAVESTREAM_*`` env vars or `wavestream serve` flags.

docs/deployment.md lists them all; keep that table in step with this class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from wavestream.streaming.resample import QUALITIES


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WAVESTREAM_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    #: accepted API keys (comma-separated in the env var); empty = no authentication
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: most concurrent streaming sessions (WebSocket streams + REST/job work); more get 1013 / 503
    max_sessions: int = Field(64, ge=1)
    #: largest single WebSocket message (binary audio or text) in bytes; larger gets 1009
    max_message_bytes: int = Field(1 << 20, ge=1024)
    #: largest REST upload in MiB (413 above)
    max_upload_mb: float = Field(100.0, gt=0)
    #: longest REST upload in seconds of audio (413 above)
    max_upload_seconds: float = Field(3600.0, gt=0)
    #: a WebSocket with no message for this many seconds is closed (1008 idle_timeout); 0 = never
    idle_timeout: float = Field(60.0, ge=0)
    #: a WebSocket whose output cannot be sent for this many seconds (the client stopped reading) is dropped
    send_timeout: float = Field(20.0, gt=0)
    #: server processes sharing the port (SO_REUSEPORT), each with its own engine; 1 = one process
    processes: int = Field(1, ge=1)
    #: engine worker threads, each running torch with one intra-op thread; None = one per core
    #: (with several processes: the cores divided among them)
    workers: int | None = Field(None, ge=1)
    #: most streams stacked into one model step; 1 = per-session processing (no batching)
    max_batch: int = Field(32, ge=1)
    #: how long the oldest ready chunk may wait for a fuller batch (ms); None = a quarter hop
    max_wait_ms: float | None = Field(None, ge=0)
    #: where async jobs (uploads, results, status) live; survives restarts
    data_dir: Path = Path("wavestream-data")
    #: finished jobs (and their files) older than this are deleted (at start and on each new job); 0 = never
    job_retention_hours: float = Field(168.0, ge=0)
    #: most jobs queued or running at once; more get 503
    max_queued_jobs: int = Field(1000, ge=1)
    #: models loaded at start so the first stream does not pay for it (comma-separated)
    preload: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: model -> weights file served instead of the shipped one (e.g. converted official weights);
    #: "MODEL=PATH" items (comma-separated in the env var); a missing file stops the server at start
    weights: Annotated[dict[str, Path], NoDecode] = Field(default_factory=dict)
    #: serve models that have no trained weights (random init): for development and tests only
    allow_untrained: bool = False
    #: seconds a graceful shutdown waits for sessions to send their final audio
    shutdown_timeout: float = Field(10.0, ge=0)
    #: resampler of streams at another rate than the model's: "LL" (our windowed-sinc filter, each
    #: sample out as soon as its input is in: 37 ms for `enhance` at 48 kHz) or soxr's "QQ" .. "VHQ"
    #: (blocks: 98-220 ms, but about a third of LL's CPU per message)
    resample_quality: str = "LL"

    @field_validator("api_keys", "preload", mode="before")
    @classmethod
    def _split_commas(cls, value):
        # env vars carry lists as "a,b" (NoDecode stops pydantic-settings from expecting JSON)
        if isinstance(value, str):
            return [v.strip() for v in value.split(",")]
        return value

    @field_validator("api_keys")
    @classmethod
    def _no_empty_key(cls, keys: list[str]):
        # `--api-key "$KEY"` with KEY unset must not quietly turn authentication off
        if any(not key.strip() for key in keys):
            raise ValueError("an API key is empty (an unset variable?); give a non-empty key, "
                             "or no --api-key / WAVESTREAM_API_KEYS at all to run without authentication")
        return [key.strip() for key in keys]

    @field_validator("weights", mode="before")
    @classmethod
    def _parse_weights(cls, value):
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, dict):
            return items
        weights = {}
        for item in items:
            name, sep, path = str(item).partition("=")
            if not sep or not name.strip() or not path.strip():
                raise ValueError(f"weights must be given as MODEL=PATH, got {item!r}")
            if name.strip() in weights:
                raise ValueError(f"weights for model {name.strip()!r} given twice")
            weights[name.strip()] = path.strip()
        return weights

    @field_validator("weights")
    @classmethod
    def _weights_exist(cls, weights: dict[str, Path]):
        for name, path in weights.items():
            if not path.is_file():
                raise ValueError(f"weights file {path} for model {name!r} does not exist")
        return weights

    @field_validator("resample_quality", mode="before")
    @classmethod
    def _known_quality(cls, value):
        quality = str(value).strip().upper()
        if quality not in QUALITIES:
            raise ValueError(f"unknown resample quality {value!r}; choose one of {', '.join(QUALITIES)}")
        return quality

    @field_validator("preload")
    @classmethod
    def _drop_empty(cls, names: list[str]):
        return [name.strip() for name in names if name.strip()]

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def ws_frame_limit(self) -> int:
        """The transport's own frame limit: above ours, so that we can answer 1009 with a JSON error
        first; frames past even this are cut by the WebSocket layer (bare close 1009)."""
        return 2 * self.max_message_bytes + 65536
