"""The keyword-spotting scorer on tiny inputs, operation counting, and `wavestream eval kws` end to end."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from wavestream.evaluate.kws import (
    OpCounter,
    argmax_keyword,
    delay_s,
    false_alarms_per_hour,
    markdown,
    pareto_front,
    smooth,
    summarize,
    top_event,
)
from wavestream.streaming import LIF


def test_smooth_is_a_causal_moving_average():
    post = np.zeros((6, 2))
    post[2, 0] = 1.0
    s = smooth(post, 3)
    assert s.shape == (6, 2)
    assert np.allclose(s[:, 0], [0, 0, 1 / 3, 1 / 3, 1 / 3, 0]) and np.allclose(s[:, 1], 0)
    assert np.allclose(smooth(np.ones((4, 1)), 2)[:, 0], [0.5, 1, 1, 1])  # zeros before the start


def test_argmax_keyword_ignores_unknown_and_background():
    post = np.zeros((10, 5))  # 3 keywords + unknown + background
    post[:, 4] = 0.9
    post[4:6, 1] = 0.6
    post[:, 3] = 0.95
    assert argmax_keyword(post, 3, 1) == (1, pytest.approx(0.6))
    assert argmax_keyword(post, 3, 2)[1] == pytest.approx(0.6)


def test_summary_counts_events_and_delays():
    rows = [{"label": "one", "argmax": "one", "event": "one", "delay_s": 0.1},
            {"label": "one", "argmax": "two", "event": None},
            {"label": "two", "argmax": "two", "event": "one", "delay_s": 0.5},
            {"label": "_unknown_", "argmax": "one", "event": None},
            {"label": "_silence_", "argmax": "two", "event": "two"}]
    s = summarize(rows, ("one", "two"))
    assert s["top1_argmax"] == round(2 / 3, 4) and s["top1_event"] == round(1 / 3, 4)
    assert s["rejection"] == 0.5 and s["delay_median_s"] == 0.1  # only the right event's delay
    assert top_event([{"score": 0.7, "label": "a"}, {"score": 0.9, "label": "b"}])["label"] == "b"
    assert top_event([]) is None
    assert delay_s({"start": 0.5, "end": 1.0}, 0.95) == pytest.approx(0.06)  # sent when it closes
    assert false_alarms_per_hour([[{}], [], [{}, {}]], [1800, 900, 900]) == 3.0


def test_pareto_front_keeps_the_undominated_trials():
    trials = [{"real_top1_event": a, "false_alarms_per_hour": f, "n": n}
              for n, (a, f) in enumerate([(0.2, 0.0), (0.1, 0.0), (0.4, 5.0), (0.3, 6.0), (0.4, 7.0), (0.6, 9.0)])]
    assert [t["n"] for t in pareto_front(trials)] == [0, 2, 5]


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Conv1d(2, 3, 1, bias=False)
        self.lif = LIF(3, decay=0.0, threshold=0.5)
        self.sparse = nn.Conv1d(3, 4, 1, bias=False)

    def forward(self, x):
        h = self.dense(x)
        s, _ = self.lif.step(h, self.lif.init_state(x.shape[0]))
        return self.sparse(s)


def test_op_counter_counts_macs_synops_and_spikes():
    toy = _Toy()
    with torch.no_grad():
        toy.dense.weight.copy_(torch.tensor([[[1.0], [0.0]], [[0.0], [1.0]], [[-1.0], [0.0]]]))
    x = torch.tensor([[[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]]]) * 0.7  # [1, 2, 4]: not binary
    counter = OpCounter(toy)
    with torch.no_grad():
        toy(x)
    counter.close()
    assert counter.macs == 2 * 4 * 3  # every input value x fan-out 3
    # LIF outputs: channel 0 fires where x0 > 0.5 (3 frames), channel 1 once, channel 2 never
    assert counter.spikes == 4 and counter.neurons == 12
    assert counter.synops == 4 * 4  # each spike reaches the 4 outputs
    assert "step" not in vars(toy.lif)  # the wrapper is gone


def test_op_counter_counts_every_layer_of_the_keyword_model():
    """Dense MACs per frame of the ANN equal the sum over its layers (the causal convs run through
    ``step``, not their inner Conv1d's forward, so they must be counted there), LMU updates included."""
    from wavestream.models.kws import build_kws
    from wavestream.streaming import CausalConv1d, LMUMemory
    model = build_kws().eval()
    frames = 50
    counter = OpCounter(model)
    with torch.no_grad():
        model(0.1 * torch.randn(1, 1, frames * model.hop))
    counter.close()
    per_frame = sum(m.conv.weight.numel() for m in model.modules() if isinstance(m, CausalConv1d))
    inner = {id(m.conv) for m in model.modules() if isinstance(m, CausalConv1d)}
    per_frame += sum(m.weight.numel() for m in model.modules()
                     if isinstance(m, nn.Conv1d) and id(m) not in inner)
    per_frame += sum(m.channels * (m.order ** 2 + m.order) for m in model.modules() if isinstance(m, LMUMemory))
    assert counter.macs == frames * per_frame


def test_markdown_renders_a_row_per_model():
    system = {"parameters": 1000, "trained": True, "rtf": 0.001, "synthetic": {"top1_argmax": 0.9, "top1_event": 0.8},
              "real": {"top1_argmax": 0.7, "top1_event": 0.6, "rejection": 0.9, "delay_median_s": 0.2,
                       "by_condition": {"quiet": {"top1_argmax": 0.8, "top1_event": 0.7}}, "confusions": {"a->b": 2},
                       "by_talker": {"tux-gb": {"top1_argmax": 0.75, "top1_event": 0.25}},
                       "cut_at_word_end": {"top1_argmax": 0.5, "top1_event": 0.4}},
              "false_alarms_per_hour": {"speech": 1.0, "noise/music": 0.0, "all": 0.7},
              "streaming": {"step_ms": 0.2, "recompute_ms": 5.0}, "ops": {"macs_per_s": 2e6, "synops_per_s": 0}}
    text = markdown({"date": "today", "machine": {"cpu": "cpu"}, "systems": {"kws": system}}, "wavestream eval kws")
    assert "| kws | 1 k | 90.0 % / 80.0 % | 70.0 % / 60.0 % |" in text and "a->b: 2" in text
    assert "- kws: 50.0 % / 40.0 %" in text
    assert "| model | tux-gb |" in text and "| kws | 75.0 % / 25.0 % |" in text


def test_eval_kws_end_to_end(tmp_path, monkeypatch):
    """Tiny dev sets, a tiny trained-for-two-steps model exported with its card, through the CLI."""
    from tests.data.tiny import prepare_tiny
    from tests.data.tiny_keywords import add_tiny_keywords, write_tiny_keyword_devsets
    from wavestream.cli import main

    root = add_tiny_keywords(prepare_tiny(tmp_path / "d"))
    write_tiny_keyword_devsets(root, negative_speech=1, negative_seconds=6.0)
    config = {"name": "kws-spiking",
              "model": {"dim": 16, "blocks": 1, "memory_channels": 2, "memory_order": 8, "theta": 32, "mlp_ratio": 1},
              "data": {"root": str(root), "batch_size": 2, "seconds": 1.0, "num_workers": 0, "reverb_prob": 0.0,
                       "real_corpora": ["saytime"]},  # a leave-one-source-out run: one real dev talker trained on
              "dev": {"limit": 10}, "loss": {"kind": "frame"},
              "train": {"steps": 2, "eval_every": 2, "checkpoint_every": 2, "warmup_steps": 0, "threads": 1}}
    (tmp_path / "c.json").write_text(json.dumps(config))
    assert main(["train", "kws-spiking", "--config", str(tmp_path / "c.json"), "--out", str(tmp_path / "run"),
                 "--quiet"]) == 0
    assert main(["train", "kws-spiking", "--out", str(tmp_path / "run"), "--export", "--weights-dir",
                 str(tmp_path / "w"), "--tune-detector"]) == 0
    tuned = json.loads((tmp_path / "w" / "kws-spiking.json").read_text())
    assert len(tuned["detector_tuning"]["trials"]) == 180  # 4 smoothings x 9 thresholds x 5 minimum lengths
    for key in ("threshold", "smooth_frames", "min_frames"):
        assert tuned["config"][key] == tuned["detector_tuning"][key]
    front = tuned["detector_tuning"]["pareto"]
    assert front and all(a["false_alarms_per_hour"] <= b["false_alarms_per_hour"] and
                         a["real_top1_event"] < b["real_top1_event"] for a, b in zip(front, front[1:], strict=False))
    # the shipped weights' detector chosen again (dev sets changed, weights not): the card's detector only
    from wavestream.train.kws import TUNED
    weights, trials = (tmp_path / "w" / "kws-spiking.safetensors").read_bytes(), tuned["detector_tuning"]["trials"]
    (tmp_path / "w" / "kws-spiking.json").write_text(json.dumps(
        {**tuned, "config": {**tuned["config"], "threshold": 0.95}, "detector_tuning": None}))
    monkeypatch.setenv("WAVESTREAM_DATA", str(root))  # the dev sets it tunes on
    assert main(["train", "kws-spiking", "--tune-detector", "--name", "kws-spiking", "--weights-dir",
                 str(tmp_path / "w")]) == 0
    retuned = json.loads((tmp_path / "w" / "kws-spiking.json").read_text())
    assert retuned["detector_tuning"]["trials"] == trials and retuned["training"] == tuned["training"]
    assert {k: retuned["config"][k] for k in TUNED} == {k: tuned["config"][k] for k in TUNED}
    assert (tmp_path / "w" / "kws-spiking.safetensors").read_bytes() == weights
    out = tmp_path / "report"
    assert main(["eval", "kws", "--model", "kws-spiking", "--root", str(root), "--out", str(out), "--weights",
                 f"kws-spiking={tmp_path / 'w' / 'kws-spiking.safetensors'}"]) == 0
    results = json.loads((out / "results.json").read_text())
    s = results["systems"]["kws-spiking"]
    card = json.loads((tmp_path / "w" / "kws-spiking.json").read_text())
    assert s["parameters"] == card["architecture"]["parameters"]
    assert s["real"]["keyword_clips"] == 200 and set(s["real"]["by_condition"]) == {
        "quiet", "snr20", "snr10", "snr5", "room-snr15"}
    assert s["real"]["cut_at_word_end"]["keyword_clips"] == 200  # the same clips, each cut where its word ends
    assert {t: v["keyword_clips"] for t, v in s["real"]["by_talker"].items()} == {
        "real-us": 50, "real-gb": 50, "saytime-tiny": 50, "spokennumbers-tiny": 50}  # 10 digits x 5 conditions
    assert s["real"]["trained_talkers"] == ["saytime-tiny"] and s["real"]["held_out"]["keyword_clips"] == 150
    assert "(trained on)" in (out / "README.md").read_text()
    assert 0 <= s["ops"]["spike_rate"] <= 1 and s["ops"]["synops_per_s"] >= 0 and s["ops"]["macs_per_s"] > 0
    assert s["false_alarms_per_hour"]["all"] >= 0 and s["negative_hours"] == pytest.approx(12 / 3600, abs=1e-3)
    assert s["streaming"]["step_ms"] > 0 and "kws-spiking" in (out / "README.md").read_text()
    assert main(["train", "kws-spiking", "--record-eval", str(out / "results.json"), "--name", "kws-spiking",
                 "--weights-dir", str(tmp_path / "w")]) == 0
    card = json.loads((tmp_path / "w" / "kws-spiking.json").read_text())
    assert card["metrics"]["real_top1"] == s["real"]["top1_event"]
    # a run that trained on a real dev talker tunes its detector on the other real talkers only
    from wavestream.evaluate import kws as kws_eval
    from wavestream.models.registry import load_model
    scored = []
    real_posteriors = kws_eval.posteriors
    monkeypatch.setattr(kws_eval, "posteriors", lambda m, audio: scored.append(len(audio)) or real_posteriors(m, audio))
    model = load_model("kws-spiking", str(tmp_path / "w" / "kws-spiking.safetensors")).eval()
    one_setting = {"smooth_frames": (5,), "thresholds": (0.5,), "min_frames": (1,), "log": lambda s: None}
    kws_eval.tune_detector(model, root, **one_setting)
    everyone = len(scored)
    scored.clear()
    kws_eval.tune_detector(model, root, trained_corpora=("saytime",), **one_setting)
    assert everyone - len(scored) == 50  # saytime-tiny's 10 digits x 5 conditions
