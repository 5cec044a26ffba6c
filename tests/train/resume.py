"""The exact-resume check every recipe test makes: a run cut at step 2 and resumed equals the whole run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file


def assert_resume_is_exact(train: Callable[..., None], folder: Path, steps: int = 4) -> None:
    """``train(out, *extra)`` runs the recipe; the cut run stops at step 2, resumes, and must match bit for bit."""
    train(folder / "whole")
    train(folder / "cut", "--steps", "2")
    assert json.loads((folder / "cut" / "last.json").read_text())["step"] == 2
    train(folder / "cut", "--resume")
    last = json.loads((folder / "cut" / "last.json").read_text())
    scored_start = [0] if last["run"].get("init") else []  # a fine-tune scores its starting weights first
    assert last["step"] == steps and [h["step"] for h in last["history"]] == [*scored_start, 2, steps]
    whole = load_file(str(folder / "whole" / "last.safetensors"))
    resumed = load_file(str(folder / "cut" / "last.safetensors"))
    for name, value in whole.items():
        assert torch.equal(value, resumed[name]), f"{name} differs after resume"
