"""``load_model`` with other weights: the config recorded beside them (a card, or a training checkpoint's
record) builds the model they were made for."""

import json

import pytest
from safetensors.torch import save_file

from wavestream.models.registry import config_beside, get_spec, load_model


def save(model, path):
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def test_a_card_beside_the_weights_replaces_the_shipped_config(tmp_path):
    """An older codec card (absolute phase, no ``phase`` key at all) loads as that codec, although the
    shipped card says another architecture."""
    from wavestream.models.codec import SpectralCodec

    path = tmp_path / "old.safetensors"
    save(SpectralCodec(), path)
    path.with_suffix(".json").write_text(json.dumps({"config": {"n_q": 12}}))
    assert config_beside(path) == ({"n_q": 12}, True)
    model = load_model("codec", path)
    assert model.trained and model.decoder.phase == "absolute" and model.decoder.subframes == 1


def test_a_checkpoint_record_gives_the_architecture_and_the_card_the_stream_settings(tmp_path):
    """A kws run's checkpoint: its record holds the architecture only; the detector's settings (stream
    params) are the shipped card's, as the documented checkpoint evaluations expect."""
    shipped = get_spec("kws").card().get("config", {})
    if not {"threshold", "min_frames"} <= set(shipped):
        pytest.skip("the shipped kws card sets no detector")
    architecture = {k: v for k, v in shipped.items() if k not in ("smooth_frames", "threshold", "min_frames")}
    path = tmp_path / "last.safetensors"
    save(load_model("kws"), path)
    path.with_suffix(".json").write_text(json.dumps({"step": 1, "run": {"config": {"model": architecture}}}))
    assert config_beside(path) == (architecture, False)
    model = load_model("kws", path)
    assert {k: model.detector_config[k] for k in ("smooth_frames", "threshold", "min_frames")} == \
        {k: shipped[k] for k in ("smooth_frames", "threshold", "min_frames")}
    # a param given by the caller still wins
    assert load_model("kws", path, threshold=0.9).detector_config["threshold"] == 0.9


def test_no_record_beside_means_the_shipped_config(tmp_path):
    path = tmp_path / "bare.safetensors"
    save(load_model("codec"), path)
    assert config_beside(path) == ({}, False)
    assert load_model("codec", path).decoder.phase == load_model("codec").decoder.phase
