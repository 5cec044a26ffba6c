import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wavestream.data.corpora import KEYWORDS
from wavestream.engine import Output, StreamPipeline, load_stream_model
from wavestream.models.kws import KWS_CLASSES, KeywordDetector, LMUFormerKWS
from wavestream.models.registry import describe, get_spec, load_model
from wavestream.streaming.testing import (
    assert_batch_independent,
    assert_causal,
    assert_chunked_equals_offline,
    assert_step_is_pure,
    max_abs_diff,
    partitions,
    run_chunked,
)

HOP = 160
VARIANTS = ["kws", "kws-spiking", "kws-spiking learned decay"]


def with_learned_decay(model: LMUFormerKWS, seed: int | None = None) -> LMUFormerKWS:
    """``model``'s weights in a spiking model whose neurons learn their decays: where they start (as ``--init``
    leaves them), or with ``seed`` set to spread values (0.2-0.95) as training might leave them."""
    learned = LMUFormerKWS(spiking=True, **{**model.config, "lif_learn_decay": True})
    missing, unexpected = learned.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and missing and all(name.endswith("decay_logit") for name in missing)
    if seed is not None:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name in missing:
                logit = learned.get_parameter(name)
                logit.copy_(torch.logit(torch.rand(logit.shape, generator=g) * 0.75 + 0.2))
    return learned.eval()


@pytest.fixture(scope="module", params=VARIANTS)
def model(request):
    torch.manual_seed(0)
    if request.param == "kws-spiking learned decay":  # no shipped weights learn it: the shipped ones, decays drawn
        return with_learned_decay(load_model("kws-spiking"), seed=0)
    return load_model(request.param)


def audio(batch: int, frames: int, seed: int, scale: float = 0.3) -> torch.Tensor:
    return torch.randn(batch, 1, frames * HOP, generator=torch.Generator().manual_seed(seed)) * scale


@settings(max_examples=6, deadline=None)
@given(frames=st.integers(2, 40), data=st.data())
def test_chunked_equals_offline(model, frames, data):
    assert_chunked_equals_offline(model, audio(2, frames, frames), data.draw(partitions(frames, max_parts=10)))


@settings(max_examples=5, deadline=None)
@given(t=st.integers(0, 30 * HOP - 1))
def test_causal(model, t):
    assert_causal(model, audio(2, 30, t), t)


def test_batch_independent(model):
    g = torch.Generator().manual_seed(3)
    streams = [torch.randn(1, 1, 40 * HOP, generator=g) * s for s in (0.01, 0.3, 1.0)]
    assert_batch_independent(model, streams, warmups=[0, 5, 17], units=12)


def test_step_is_pure(model):
    assert_step_is_pure(model, audio(2, 6, 1), units=3)


def test_learned_decays_start_as_the_fixed_model():
    """A spiking model that learns its decays, made from weights without them (``--init``), starts as exactly
    the model those weights make: every decay starts at the fixed one (0.5, sigmoid(0) exactly)."""
    shipped = load_model("kws-spiking")
    learned = with_learned_decay(shipped)
    x = audio(2, 50, 9)
    with torch.no_grad():
        assert torch.equal(learned(x), shipped(x))


def test_one_frame_at_a_time_equals_offline(model):
    """The point of the LMU: the model truly runs one 10 ms frame per step, with the same result."""
    x = audio(2, 40, 7)  # longer than the direct closed form's 16 frames: offline uses the FFT form
    with torch.no_grad():
        assert max_abs_diff(run_chunked(model, x, [1] * 40), model(x)) <= 1e-5



def test_one_frame_inference_path_is_the_general_path(model, monkeypatch):
    """In inference a 10 ms step takes ``_step_frame`` (the same ops on [B, C] tensors); on the shipped weights
    its posteriors and state equal the general path's (``_logits``, what every step took before) bit for bit,
    frame after frame. With autograd on, or in training mode, a one-frame step takes the general path."""
    x = audio(2, 60, 11)
    with torch.no_grad():
        fast, general = model.init_state(2), model.init_state(2)
        for k in range(60):
            chunk = x[..., k * HOP:(k + 1) * HOP]
            y, fast = model.step(chunk, fast)
            logits, general = model._logits(chunk, general)
            assert torch.equal(y, logits.softmax(1)) and list(fast) == list(general)
            assert all(torch.equal(fast[key], general[key]) for key in fast), k

    def refuse(x, state):
        raise AssertionError("the one-frame inference path ran")

    monkeypatch.setattr(model, "_step_frame", refuse)
    assert model.step(x[..., :HOP], fast)[0].grad_fn is not None
    try:
        with torch.no_grad():
            model.train()(x[..., :HOP])
    finally:
        model.eval()

def test_frame_logits_are_the_step_path(model):
    x = audio(3, 25, 2)
    with torch.no_grad():
        logits = model.frame_logits(x)
        assert logits.shape == (3, len(KWS_CLASSES), 25)
        assert max_abs_diff(logits.softmax(1), model(x)) <= 1e-6


def test_classes_attributes_and_size(model):
    assert KWS_CLASSES == (*KEYWORDS, "_unknown_", "_silence_") and len(KWS_CLASSES) == 22
    assert (model.sample_rate, model.hop, model.latency) == (16000, 160, 240)
    assert (model.input_kind, model.output_kind) == ("audio", "events")
    assert sum(p.numel() for p in model.parameters()) <= 1_000_000  # the paper's size class (d = 256: ~0.9 M here)
    info = describe("kws-spiking" if model.spiking else "kws")
    assert info["task"] == "kws" and info["latency_ms"] == 25.0  # the 25 ms log-mel window


@pytest.mark.parametrize("spiking, learn_decay", [(False, False), (True, False), (True, True)])
def test_gradients_reach_every_parameter(spiking, learn_decay):
    """Training backpropagates through the FFT form of the memory and (spiking) the surrogate gradients, to
    the neurons' decays too where they learn them."""
    torch.manual_seed(1)
    model = LMUFormerKWS(spiking=spiking, dim=32, blocks=1, lif_learn_decay=learn_decay).train()
    assert any(name.endswith("decay_logit") for name, _ in model.named_parameters()) == learn_decay
    logits = model.frame_logits(audio(2, 30, 4))
    target = torch.randint(len(KWS_CLASSES), (2, 30), generator=torch.Generator().manual_seed(0))
    torch.nn.functional.cross_entropy(logits, target).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_spiking_model_passes_spikes_between_blocks():
    model = LMUFormerKWS(spiking=True, dim=32, blocks=1).eval()
    seen = []
    original = model.blocks[0].spikes_mlp.step

    def record(x, state):
        y, s = original(x, state)
        seen.append(y)
        return y, s

    model.blocks[0].spikes_mlp.step = record
    with torch.no_grad():
        model(audio(1, 20, 5))
    spikes = torch.cat(seen, -1)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0} and 0 < spikes.mean() < 1


def test_rejects_bad_input_and_config():
    model = LMUFormerKWS(dim=16, blocks=1)
    with pytest.raises(ValueError, match="mono audio"):
        model.step(torch.zeros(1, 2, HOP), model.init_state(1))
    with pytest.raises(ValueError, match="multiple of hop"):
        model.step(torch.zeros(1, 1, HOP + 1), model.init_state(1))
    with pytest.raises(ValueError, match="multiple of 8"):
        LMUFormerKWS(dim=12)
    with pytest.raises(ValueError, match="threshold"):
        LMUFormerKWS(threshold=0.0)


def untrained(name: str, **config):
    """Model ``name`` with random weights (trained weights ship now, and load_model would load them)."""
    model = get_spec(name).build(**config).eval()
    model.trained = False
    return model


@pytest.mark.parametrize("learn_decay", [False, True])
def test_config_round_trips_through_the_constructor(learn_decay):
    model = LMUFormerKWS(spiking=True, dim=32, blocks=1, threshold=0.7, lif_learn_decay=learn_decay)
    rebuilt = untrained("kws-spiking", **model.config)
    assert rebuilt.config == model.config and rebuilt.spiking
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


# -- events ---------------------------------------------------------------------------------------
K = len(KWS_CLASSES)
SILENCE = KWS_CLASSES.index("_silence_")


def posteriors(frames: int, words: list[tuple[str, int, int, float]], rows: int = 1) -> np.ndarray:
    """Silence everywhere except ``(label, first, last, peak)`` bumps: ``[frames, rows, K]``."""
    p = np.zeros((frames, rows, K))
    p[..., SILENCE] = 1.0
    for label, first, last, peak in words:
        k = KWS_CLASSES.index(label)
        p[first:last + 1, 0, k] = peak
        p[first:last + 1, 0, SILENCE] = 1 - peak
    return p


def detector(rows: int = 1, **config) -> KeywordDetector:
    config = {"smooth_frames": 5, "threshold": 0.5, "refractory_frames": 10, **config}
    return KeywordDetector(KWS_CLASSES, len(KEYWORDS), rows=rows, frame_rate=100.0, **config)


def run_detector(det: KeywordDetector, p: np.ndarray, sizes: list[int] | None = None) -> list[dict]:
    events, pos = [], 0
    for n in sizes or [len(p)]:
        events += det.push(p[pos:pos + n])
        pos += n
    assert pos == len(p)
    return events + det.flush()


def test_one_word_gives_one_debounced_event():
    p = posteriors(200, [("seven", 50, 89, 0.95)])
    events = run_detector(detector(), p)
    # the 5-frame mean reaches 0.5 three frames in and falls below it three frames after the word
    assert events == [{"label": "seven", "start": 0.52, "end": 0.92, "score": 0.95}]


def test_nothing_heard_gives_no_events():
    assert run_detector(detector(), posteriors(300, [])) == []
    assert run_detector(detector(), posteriors(0, [])) == []


def test_highest_scoring_event_is_the_word_said():
    p = posteriors(300, [("one", 40, 52, 0.7), ("seven", 100, 150, 0.97)])
    events = run_detector(detector(), p)
    assert [e["label"] for e in events] == ["one", "seven"]
    assert max(events, key=lambda e: e["score"])["label"] == "seven"


def test_refractory_period_and_flush():
    p = posteriors(120, [("yes", 10, 30, 0.9), ("no", 36, 50, 0.9), ("go", 100, 119, 0.9)])
    events = run_detector(detector(refractory_frames=20), p)
    # "no" opens within 20 frames of the end of "yes": suppressed; "go" is still open at the end: flushed
    assert [(e["label"], e["end"]) for e in events] == [("yes", 0.33), ("go", 1.2)]


def test_rows_are_independent_streams_with_a_channel():
    p = np.concatenate([posteriors(100, []), posteriors(100, [("up", 20, 60, 0.9)])], axis=1)
    assert run_detector(detector(rows=2), p) == [{"label": "up", "start": 0.22, "end": 0.63, "score": 0.9,
                                                  "channel": 1}]


def test_events_shorter_than_min_frames_are_dropped_without_a_refractory_period():
    p = posteriors(200, [("one", 20, 27, 0.95), ("seven", 40, 89, 0.95)])
    # "one" stays above the threshold for 8 frames (5-frame mean: frames 22-29), "seven" for 50 (42-91):
    # after "one", the refractory period (70 frames) hides "seven"; with "one" dropped, it does not
    assert [e["label"] for e in run_detector(detector(refractory_frames=70), p)] == ["one"]
    assert run_detector(detector(refractory_frames=70, min_frames=9), p) == [
        {"label": "seven", "start": 0.42, "end": 0.92, "score": 0.95}]  # the dropped "one" left no refractory
    assert run_detector(detector(min_frames=51), p) == []
    assert run_detector(detector(min_frames=8), posteriors(26, [("go", 20, 25, 0.95)])) == []  # flush too
    assert run_detector(detector(min_frames=4), posteriors(26, [("go", 20, 25, 0.95)]))[0]["label"] == "go"


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), min_frames=st.sampled_from([1, 5, 20]), rows=st.integers(1, 2),
       data=st.data())
def test_events_do_not_depend_on_how_the_stream_was_cut(seed, min_frames, rows, data):
    rng = np.random.default_rng(seed)
    frames = 600

    def words():
        return [(KEYWORDS[rng.integers(len(KEYWORDS))], int(s), int(s + rng.integers(3, 60)),
                 float(rng.uniform(0.3, 1))) for s in rng.integers(0, frames - 60, size=12)]
    p = np.concatenate([posteriors(frames, words()) for _ in range(rows)], axis=1)
    p = p + rng.uniform(0, 0.2, (frames, rows, K))  # jitter around the threshold
    offline = run_detector(detector(rows, min_frames=min_frames), p)
    assert offline or min_frames > 1  # the stream holds events to compare
    sizes = data.draw(partitions(frames, max_parts=40))
    assert run_detector(detector(rows, min_frames=min_frames), p, sizes) == offline
    assert run_detector(detector(rows, min_frames=min_frames), p, [1] * frames) == offline


def test_detector_equals_its_frame_by_frame_definition():
    """The detector jumps over frames where nothing changes; the events are those of the plain
    per-frame state machine (written out here)."""
    rng = np.random.default_rng(5)
    words = [(KEYWORDS[rng.integers(len(KEYWORDS))], int(s), int(s + rng.integers(3, 60)), float(rng.uniform(0.3, 1)))
             for s in rng.integers(0, 940, size=30)]
    p = posteriors(1000, words) + rng.uniform(0, 0.2, (1000, 1, K))
    for smooth, threshold, refractory, shortest in [(5, 0.5, 10, 1), (3, 0.4, 0, 1), (10, 0.45, 30, 12)]:
        kw = np.concatenate([np.zeros((smooth - 1, len(KEYWORDS))), p[:, 0, :len(KEYWORDS)]])
        scores = np.stack([kw[t:t + smooth].mean(0) for t in range(len(p))])
        expected, current, quiet = [], None, 0

        def close(c, shortest=shortest):
            return (c[3] - c[1] + 1 >= shortest, {"label": KEYWORDS[c[0]], "start": round(c[1] / 100, 4),
                                                  "end": round((c[3] + 1) / 100, 4), "score": round(c[2], 4)})
        for t, s in enumerate(scores):
            if current is not None:
                if s[current[0]] >= threshold:
                    current = (current[0], current[1], max(current[2], float(s[current[0]])), t)
                    continue
                keep, event = close(current)
                current = None
                if keep:
                    expected.append(event)
                    quiet = refractory
            elif quiet:
                quiet -= 1
            elif s.max() >= threshold:
                current = (int(s.argmax()), t, float(s.max()), t)
        if current is not None and close(current)[0]:
            expected.append(close(current)[1])
        config = dict(smooth_frames=smooth, threshold=threshold, refractory_frames=refractory, min_frames=shortest)
        assert run_detector(detector(**config), p) == expected and expected


def test_model_events_through_the_pipeline_do_not_depend_on_chunking():
    """The real model (random weights, a low threshold so that it fires) behind the stream pipeline:
    any chunking of a long stream gives the events of one offline pass over the same frames."""
    config = {"smooth_frames": 5, "threshold": 0.09, "refractory_frames": 10}
    model = untrained("kws", **config)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((16000 * 6, 1)) * np.repeat(rng.choice([0.0, 0.01, 0.3], 60), 1600)[:, None]
         ).astype(np.float32)
    lead_out = model.latency + round(model.end_silence_s * model.sample_rate)  # what the pipeline feeds at the end
    with torch.no_grad():  # offline: the whole stream (plus the pipeline's lead-out) in one forward
        padded = np.concatenate([x[:, 0], np.zeros(lead_out + -(len(x) + lead_out) % 160, np.float32)])
        frames = model(torch.from_numpy(padded)[None, None])[0].T[:, None].numpy()
    offline = run_detector(model.event_detector(1, 100.0), frames)
    assert len(offline) >= 3
    for seed in range(3):
        cuts = np.sort(np.random.default_rng(seed).integers(0, len(x), 12))
        pipe = StreamPipeline(model, 16000, 1)
        out = Output.concat([pipe.process(part) for part in np.split(x, cuts)] + [pipe.finish()])
        np.testing.assert_allclose(out.frames, frames, atol=1e-5)
        assert out.events == offline


def test_detector_thresholds_are_config_and_stream_params():
    model = load_stream_model("kws", {"threshold": 0.8, "smooth_frames": 3, "min_frames": 25})
    assert model.event_detector().threshold == 0.8 and model.event_detector().smooth_frames == 3
    assert model.event_detector().min_frames == 25 and model.event_detector(min_frames=4).min_frames == 4
    assert LMUFormerKWS(dim=16, blocks=1, min_frames=7).config["min_frames"] == 7
    for bad in (0, 1001, 2.5, True, "3"):
        with pytest.raises(ValueError, match="min_frames"):
            load_stream_model("kws", {"min_frames": bad})
    with pytest.raises(ValueError, match="does not take"):
        load_stream_model("kws", {"dim": 64})
