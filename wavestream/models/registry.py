"""Model registry: names -> constructors + shipped weights (safetensors) + model cards (JSON).

A model module registers itself with ``@register("name", ...)``; ``load_model`` builds it, loads
the shipped weights when present (never pickle) and returns it in eval mode.

This module imports no torch (the models and safetensors load on first use), so that
`wavestream models` can list the shipped models from ``catalog.json`` without building them.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wavestream.streaming.module import StreamingModule

log = logging.getLogger(__name__)
WEIGHTS_DIR = Path(str(resources.files("wavestream.models") / "weights"))
#: the modules whose import registers the built-in models
BUILTIN_MODULES = ("wavestream.models.codec", "wavestream.models.encodec", "wavestream.models.enhance",
                   "wavestream.models.kws", "wavestream.models.separate")


def weights_path(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.safetensors"


def card_path(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.json"


def read_card(name: str) -> dict:
    """Model ``name``'s shipped card (``{}`` when it has none)."""
    path = card_path(name)
    return json.loads(path.read_text()) if path.exists() else {}


def weights_facts(name: str, card: dict) -> dict:
    """The part of a model's description that comes with its weights and card, not with its code."""
    return {"trained": weights_path(name).is_file(), "metrics": card.get("metrics", {})}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: str  # enhance | separate | codec | kws
    build: Callable[..., StreamingModule]
    description: str = ""

    @property
    def weights_path(self) -> Path:
        return weights_path(self.name)

    @property
    def card_path(self) -> Path:
        return card_path(self.name)

    def card(self) -> dict:
        return read_card(self.name)


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, task: str, description: str = ""):
    def deco(build: Callable[..., StreamingModule]):
        _REGISTRY[name] = ModelSpec(name, task, build, description)
        return build
    return deco


def _ensure_loaded() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def model_names() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY)) or 'none'}")
    return _REGISTRY[name]


class UntrainedModelError(ValueError):
    """The model has no trained weights and the caller refused random ones."""


def load_model(name: str, weights: str | Path | None = None, *, allow_untrained: bool = True,
               **params) -> StreamingModule:
    """Build model ``name`` with its card's config (overridden by ``params``) and load its weights.

    ``weights`` overrides the shipped file (FileNotFoundError if it does not exist); a card or a training
    checkpoint's record beside it (the same name, ``.json``) gives the config it was made with, in place of
    the shipped card's, so weights of another architecture load as themselves (``config_beside``). A
    checkpoint's record holds the architecture only: what a stream may set (``stream_params``, such as a
    detector's settings) comes from the shipped card then. Without
    shipped weights the model keeps its random init, ``model.trained`` is False and a warning is
    logged; with ``allow_untrained=False`` (the server's default) that is UntrainedModelError instead.
    """
    from safetensors.torch import load_file

    spec = get_spec(name)
    path = Path(weights) if weights is not None else spec.weights_path
    if weights is not None and not path.is_file():
        raise FileNotFoundError(f"weights file {path} for model {name!r} does not exist")
    trained = path.is_file()
    if not trained and not allow_untrained:
        raise UntrainedModelError(f"model {name!r} has no trained weights; refusing to serve random ones "
                                  "(start the server with --allow-untrained to allow them)")
    shipped = spec.card().get("config", {})
    beside, is_card = config_beside(path) if weights is not None else ({}, False)
    config = {**(beside or shipped), **params}
    model = spec.build(**config)
    if beside and not is_card:  # a checkpoint's architecture with the shipped card's stream settings
        settings = {k: v for k, v in shipped.items() if k in getattr(model, "stream_params", ()) and k not in config}
        if settings:
            model = spec.build(**config, **settings)
    model.trained = trained
    if trained:
        model.load_state_dict(load_file(str(path)))
    else:
        log.warning("model %r has no trained weights (%s missing): it runs with random weights", name, path.name)
    return model.eval()


def config_beside(weights: str | Path) -> tuple[dict, bool]:
    """The model config recorded beside a weights file, and whether a card recorded it: a card's ``config``
    (True), or a training checkpoint's ``run.config.model`` (False); ``({}, False)`` when there is neither."""
    path = Path(weights).with_suffix(".json")
    if not path.is_file():
        return {}, False
    record = json.loads(path.read_text())
    if "config" in record:
        return record["config"], True
    return record.get("run", {}).get("config", {}).get("model", {}), False


def describe(name: str) -> dict:
    """What `wavestream models` and `GET /v1/models` show about a model (this builds it)."""
    spec = get_spec(name)
    model = load_model(name)
    card = spec.card()
    return {
        "name": name,
        "task": spec.task,
        "description": spec.description or card.get("description", ""),
        "sample_rate": model.sample_rate,
        "hop": model.hop,
        "latency_samples": model.algorithmic_latency,  # framing + window/look-ahead, as for the peers
        "latency_ms": 1000.0 * model.algorithmic_latency / model.sample_rate if model.sample_rate else None,
        "input": model.input_kind,
        "output": model.output_kind,
        "parameters": sum(p.numel() for p in model.parameters()),
        "stream_params": stream_param_defaults(model, card),
        **weights_facts(name, card),
    }


def stream_param_defaults(model: StreamingModule, card: dict) -> dict:
    """The params a stream may set (``stream_params``), each with the value it has when not set:
    the model card's config, else the constructor's default (clients show them as a form)."""
    signature = inspect.signature(type(model).__init__).parameters
    defaults = {k: p.default for k, p in signature.items() if p.default is not inspect.Parameter.empty}
    config = {**defaults, **card.get("config", {})}
    return {name: config.get(name) for name in getattr(model, "stream_params", ())}
