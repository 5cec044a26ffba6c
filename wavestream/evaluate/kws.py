"""`wavestream eval kws`: keyword spotters on the frozen keyword dev sets -> results.json + README.md.

    wavestream data devset --task keywords,keywords-real,keywords-negative   # once
    wavestream eval kws --model kws,kws-spiking                              # report in docs/results/kws

Measured per model (offline ``model(x)`` = ``step`` from a zero state, one thread):

- **top-1** on the clips holding one keyword, two ways: ``argmax`` (the keyword whose smoothed
  posterior peaks highest anywhere in the clip; no threshold) and ``event`` (the label of the
  highest-scoring event of the model's own detector; no event counts as wrong). Unknown-word and
  background clips count as right when no keyword event fires (``rejection``).
  On the synthetic dev voices (``keywords``, in-domain) and on recorded English (``keywords-real``,
  a corpus never trained on; also per condition: quiet, 20/10/5 dB noise, room).
- **false alarms per hour**: keyword events on ``keywords-negative`` (speech without keywords; noise
  and music), per hour of audio.
- **delay**: when a stream gets the event (the detector reports it when it closes: at the end of the
  first frame whose smoothed score falls below the threshold again) minus when the word ends, over
  correct detections: median and 90th percentile.
- **cost**: real-time factor; one 10 ms streaming ``step`` vs recomputing a ``theta``-frame window
  from scratch; multiply-accumulates per second (dense inputs) and synaptic operations per second
  (accumulates triggered by spikes: nonzero binary inputs x fan-out) of the linear maps and the LMU
  memories, the log-mel front end left out; spike rate (share of LIF outputs that fire).
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

TASK_SETS = {"synthetic": "keywords", "real": "keywords-real", "negative": "keywords-negative"}


# -- scoring (pure functions: posteriors in, numbers out) ------------------------------------------

def smooth(posteriors: np.ndarray, frames: int) -> np.ndarray:
    """Causal moving average over ``frames`` frames of ``[T, C]`` posteriors (zeros before the start),
    as the event detector smooths."""
    posteriors = np.asarray(posteriors, dtype=np.float64)
    padded = np.concatenate([np.zeros((frames - 1, posteriors.shape[1])), posteriors])
    c = np.cumsum(np.concatenate([np.zeros((1, posteriors.shape[1])), padded]), axis=0)
    return (c[frames:] - c[:-frames]) / frames


def argmax_keyword(posteriors: np.ndarray, keywords: int, smooth_frames: int) -> tuple[int, float]:
    """(keyword index, score): the keyword whose smoothed posterior peaks highest over the clip."""
    peaks = smooth(posteriors, smooth_frames)[:, :keywords].max(axis=0)
    best = int(peaks.argmax())
    return best, float(peaks[best])


def top_event(events: list[dict]) -> dict | None:
    return max(events, key=lambda e: e["score"]) if events else None


def delay_s(event: dict, word_end_s: float, frame_s: float = 0.01) -> float:
    """Seconds from the end of the word to when the event is sent: the end of the frame after its last one
    above the threshold, the frame that closes it (``end`` is the end of that last frame)."""
    return event["end"] + frame_s - word_end_s


def summarize(rows: list[dict], keywords: tuple[str, ...]) -> dict:
    """Accuracy, rejection and delay over per-clip rows (``label``, ``argmax``, ``event``, ``delay_s``)."""
    kw = [r for r in rows if r["label"] in keywords]
    other = [r for r in rows if r["label"] not in keywords]
    out: dict = {"clips": len(rows), "keyword_clips": len(kw)}
    if kw:
        out["top1_argmax"] = round(float(np.mean([r["argmax"] == r["label"] for r in kw])), 4)
        out["top1_event"] = round(float(np.mean([r["event"] == r["label"] for r in kw])), 4)
        delays = [r["delay_s"] for r in kw if r["event"] == r["label"] and r.get("delay_s") is not None]
        if delays:
            out["delay_median_s"] = round(float(np.median(delays)), 3)
            out["delay_p90_s"] = round(float(np.percentile(delays, 90)), 3)
    if other:
        out["rejection"] = round(float(np.mean([r["event"] is None for r in other])), 4)
    return out


def false_alarms_per_hour(events_per_clip: list[list[dict]], seconds: list[float]) -> float:
    hours = sum(seconds) / 3600
    return round(sum(len(e) for e in events_per_clip) / hours, 2) if hours else float("nan")


# -- operation counting -----------------------------------------------------------------------------

class OpCounter:
    """Counts the operations of a model's forward passes while attached.

    Per frame: ``macs`` from dense (non-binary) inputs of the linear maps, ``synops`` = nonzero binary
    inputs x fan-out (an accumulate per spike per target), the LMU memories' recurrent update (order^2 +
    order MACs per channel per frame), and ``spikes``/``neurons`` from the LIF outputs. Plain Conv1d
    modules are counted through forward hooks. Streaming children run through ``step`` (not
    ``forward``; a ``CausalConv1d`` calls ``F.conv1d`` on its inner Conv1d's weights, so no hook fires),
    so causal convs, LMU and LIF modules are counted by wrapping their ``step`` on the instance, undone
    by ``close``.
    """

    def __init__(self, model: nn.Module):
        from wavestream.streaming import LIF, CausalConv1d, LMUMemory
        self.macs = self.synops = self.spikes = self.neurons = 0.0
        self.handles, self.wrapped = [], []
        inner = {id(m.conv) for m in model.modules() if isinstance(m, CausalConv1d)}
        for module in model.modules():
            if isinstance(module, CausalConv1d):
                self._wrap(module, lambda m, x, y: self._conv(m.conv, (x,), y))
            elif isinstance(module, nn.Conv1d) and id(module) not in inner:
                self.handles.append(module.register_forward_hook(self._conv))
            elif isinstance(module, LMUMemory | LIF):
                self._wrap(module, self._lmu if isinstance(module, LMUMemory) else self._lif)

    def _wrap(self, module: nn.Module, record) -> None:
        original = module.step

        def step(x, state):
            y, new_state = original(x, state)
            record(module, x, y)
            return y, new_state
        module.step = step
        self.wrapped.append(module)

    def _conv(self, module: nn.Conv1d, inputs, output) -> None:
        x = inputs[0]
        fan_out = module.out_channels * module.kernel_size[0] // module.groups
        if bool(((x == 0) | (x == 1)).all()):
            self.synops += float((x != 0).sum()) * fan_out
        else:
            self.macs += float(x.numel()) * fan_out

    def _lmu(self, module, u: torch.Tensor, m: torch.Tensor) -> None:
        self.macs += float(u.shape[0] * u.shape[2]) * module.channels * (module.order ** 2 + module.order)

    def _lif(self, module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.spikes += float((y != 0).sum())
        self.neurons += float(y.numel())

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        for module in self.wrapped:
            del module.step  # the class's step again


def operation_counts(model: nn.Module, audio: list[np.ndarray]) -> dict:
    """Per second of audio: MACs, SynOps, and the LIF spike rate, over ``audio`` clips (16 kHz)."""
    counter = OpCounter(model)
    seconds = 0.0
    try:
        with torch.no_grad():
            for x in audio:
                n = len(x) // model.hop * model.hop
                model(torch.from_numpy(np.ascontiguousarray(x[:n]))[None, None])
                seconds += n / model.sample_rate
    finally:
        counter.close()
    out = {"macs_per_s": round(counter.macs / seconds), "synops_per_s": round(counter.synops / seconds)}
    if counter.neurons:
        out["spike_rate"] = round(counter.spikes / counter.neurons, 4)
    return out


def median_seconds(call: Callable[[], object], times: int) -> float:
    """The median wall time of ``times`` calls: a call that waited for the core does not weigh in."""
    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds))


def step_cost(model: nn.Module, window_frames: int, repeats: int = 200) -> dict:
    """Seconds for one streaming 10 ms step vs a recompute of ``window_frames`` frames from zero state:
    medians of the calls (``repeats`` steps, ``repeats // 20`` recomputes, at least 5), so a call that
    waited for the core does not weigh in."""
    hop = model.hop
    rng = np.random.default_rng(0)
    one = torch.from_numpy(rng.standard_normal((1, 1, hop)).astype(np.float32) * 0.05)
    window = torch.from_numpy(rng.standard_normal((1, 1, hop * window_frames)).astype(np.float32) * 0.05)
    state = model.init_state(1)

    def one_step() -> None:
        nonlocal state
        _, state = model.step(one, state)

    with torch.no_grad():
        median_seconds(one_step, 20)  # warm-up
        step = median_seconds(one_step, repeats)
        model(window)
        recompute = median_seconds(lambda: model(window), max(5, repeats // 20))
    return {"step_ms": round(1000 * step, 4), "recompute_ms": round(1000 * recompute, 3),
            "window_frames": window_frames, "step_over_recompute": round(step / recompute, 4),
            "step_rtf": round(step / (hop / model.sample_rate), 4)}


# -- running models over the dev sets ---------------------------------------------------------------

def posteriors(model: nn.Module, audio: np.ndarray) -> np.ndarray:
    """``[T, C]`` per-frame posteriors of one clip followed by the model's ``end_silence_s`` of silence, as
    the service feeds at a stream's end (the tail short of a hop is dropped)."""
    silence = np.zeros(round(getattr(model, "end_silence_s", 0.0) * model.sample_rate), np.float32)
    audio = np.concatenate([np.asarray(audio, np.float32), silence])
    n = len(audio) // model.hop * model.hop
    with torch.no_grad():
        y = model(torch.from_numpy(np.ascontiguousarray(audio[:n]))[None, None])
    return y[0].T.numpy()


def detect(model: nn.Module, post: np.ndarray, **params) -> list[dict]:
    """Events of one clip's ``[T, C]`` posteriors by the model's detector (``params`` override its settings)."""
    detector = model.event_detector(**params)
    return detector.push(post[:, None, :]) + detector.flush()


def score_clips(model: nn.Module, folder: Path, entries: list[dict], rate: int,
                cut_at_word_end: bool = False) -> tuple[list[dict], float, float]:
    """(per-clip rows, processing seconds, seconds of audio processed: the end silence counts, as its compute
    does, so the RTF is the model's). ``cut_at_word_end``: each clip ends where its word
    does (``end``), as a tightly trimmed recording would; the model still hears its end silence after it."""
    keywords = len(model.classes) - 2
    smooth_frames = model.detector_config["smooth_frames"]
    rows, busy, total = [], 0.0, 0.0
    for entry in entries:
        audio, sr = sf.read(str(folder / entry["audio"]), dtype="float32")
        if sr != rate:
            raise ValueError(f"{entry['audio']}: {sr} Hz, the model runs at {rate} Hz")
        if cut_at_word_end:
            audio = audio[:entry["end"]]
        t0 = time.perf_counter()
        post = posteriors(model, audio)
        events = detect(model, post)
        busy += time.perf_counter() - t0
        total += len(post) * model.hop / sr
        best, score = argmax_keyword(post, keywords, smooth_frames)
        top = top_event(events)
        row = {"id": entry["id"], "label": entry["label"], "argmax": model.classes[best],
               "argmax_score": round(score, 4), "event": top["label"] if top else None, "events": len(events)}
        for key in ("condition", "speaker", "corpus"):
            if key in entry:
                row[key] = entry[key]
        if top and "end" in entry:
            row["delay_s"] = round(delay_s(top, entry["end"] / rate), 3)
        rows.append(row)
    return rows, busy, total


def trained_real_corpora(name: str, weights: str | None = None) -> list[str]:
    """The real dev corpora that the weights trained on (a leave-one-source-out run's ``real_corpora``), from
    the card or checkpoint record beside them: their talkers' scores are not held-out figures."""
    from wavestream.models.registry import card_path
    path = Path(weights).with_suffix(".json") if weights else card_path(name)
    if not path.is_file():
        return []
    record = json.loads(path.read_text())
    data = record.get("data", {}).get("synthesis") or record.get("run", {}).get("config", {}).get("data", {})
    return list(data.get("real_corpora") or [])


def evaluate_model(name: str, root: str | Path | None = None, weights: str | None = None, limit: int | None = None,
                   log: Callable[[str], None] = print, model: nn.Module | None = None) -> dict:
    from wavestream.data.devset import load_devset
    from wavestream.models.registry import load_model
    torch.set_num_threads(1)
    # the weights' record says which real talkers they trained on; a model passed in without its weights has none
    trained = trained_real_corpora(name, weights) if weights or model is None else []
    if model is None:
        model = load_model(name, weights)  # a card or checkpoint record beside other weights gives their config
    model.eval()
    keywords = tuple(model.classes[:-2])
    out: dict = {"parameters": sum(p.numel() for p in model.parameters()), "trained": getattr(model, "trained", None),
                 "latency_ms": 1000 * model.algorithmic_latency / model.sample_rate,
                 "detector": dict(model.detector_config),
                 "config": dict(getattr(model, "config", {}))}
    busy = audio_s = 0.0
    for key in ("synthetic", "real"):
        folder, entries = load_devset(TASK_SETS[key], root)
        entries = entries[:: max(1, len(entries) // limit)] if limit else entries
        rows, b, a = score_clips(model, folder, entries, model.sample_rate)
        busy, audio_s = busy + b, audio_s + a
        out[key] = summarize(rows, keywords)
        if key == "real":
            conditions = sorted({r["condition"] for r in rows if r["label"] in keywords})
            out[key]["by_condition"] = {c: summarize([r for r in rows if r.get("condition") == c], keywords)
                                        for c in conditions}
            # the talkers differ far more than the conditions do: a set's mean hides which voices fail
            keyword_rows = [r for r in rows if r["label"] in keywords]
            out[key]["by_talker"] = {t: summarize([r for r in keyword_rows if r.get("speaker") == t], keywords)
                                     for t in sorted({r.get("speaker", "?") for r in keyword_rows})}
            out[key]["confusions"] = _confusions(rows, keywords)
            if trained:
                out[key]["trained_on"] = trained
                out[key]["trained_talkers"] = sorted({r["speaker"] for r in rows if r.get("corpus") in trained})
                out[key]["held_out"] = summarize([r for r in rows if r.get("corpus") not in trained], keywords)
            spoken = [e for e in entries if e["label"] in keywords]
            out[key]["cut_at_word_end"] = summarize(score_clips(model, folder, spoken, model.sample_rate,
                                                                cut_at_word_end=True)[0], keywords)
        log(f"{name} {key}: " + ", ".join(f"{k} {v}" for k, v in out[key].items()
                                          if not isinstance(v, dict | list)))
    folder, entries = load_devset(TASK_SETS["negative"], root)
    entries = entries[: max(1, limit // 10)] if limit else entries
    by_kind: dict[str, tuple[list, list]] = {}
    clips = []
    for entry in entries:
        audio, sr = sf.read(str(folder / entry["audio"]), dtype="float32")
        t0 = time.perf_counter()
        post = posteriors(model, audio)
        events = detect(model, post)
        busy, audio_s = busy + time.perf_counter() - t0, audio_s + len(post) * model.hop / sr
        kind = "speech" if entry.get("kind") == "speech" else "noise/music"
        by_kind.setdefault(kind, ([], []))
        by_kind[kind][0].append(events)
        by_kind[kind][1].append(len(audio) / sr)
        clips.append(audio)
    out["false_alarms_per_hour"] = {k: false_alarms_per_hour(e, s) for k, (e, s) in by_kind.items()}
    out["false_alarms_per_hour"]["all"] = false_alarms_per_hour(
        [e for v in by_kind.values() for e in v[0]], [s for v in by_kind.values() for s in v[1]])
    out["negative_hours"] = round(sum(s for v in by_kind.values() for s in v[1]) / 3600, 3)
    out["rtf"] = round(busy / audio_s, 5)
    out["ops"] = operation_counts(model, clips[:4])
    out["streaming"] = step_cost(model, int(getattr(model, "config", {}).get("theta", 128)))
    log(f"{name}: false alarms/h {out['false_alarms_per_hour']}, RTF {out['rtf']}, ops {out['ops']}, "
        f"step {out['streaming']}")
    return out


def tune_detector(model: nn.Module, root: str | Path | None = None, max_false_alarms: float = 1.0,
                  fallback_false_alarms: float = 25.0, min_share: float = 0.5,
                  thresholds: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9),
                  smooth_frames: tuple[int, ...] = (5, 10, 20, 30), min_frames: tuple[int, ...] = (1, 10, 20, 30, 40),
                  trained_corpora: tuple[str, ...] = (), log: Callable[[str], None] = print) -> dict:
    """Detector settings (smoothing, threshold, minimum event length) with the best real-speech event
    top-1 among those with at most ``max_false_alarms`` per hour on the negative dev set. When the
    best of those finds fewer than ``min_share`` of what the best setting finds at any alarm rate (a
    detector that hardly ever fires is no default), the bound is relaxed to ``fallback_false_alarms``;
    with nothing under either, the fewest alarms. Ties go to fewer alarms, then to the shorter
    minimum length (the plainer detector). ``trained_corpora``: real dev talkers the model trained on
    (``real_corpora`` of a leave-one-source-out run), left out of the real keywords scored here.

    Posteriors are computed once; every setting replays them through a fresh detector (dev sets only:
    the held-out test is never looked at). The result has ``pareto``: the trials no other trial beats
    on both real top-1 and false alarms.
    """
    from wavestream.data.devset import load_devset
    from wavestream.models.kws import KeywordDetector
    keywords = len(model.classes) - 2
    refractory = model.detector_config["refractory_frames"]
    real_folder, real = load_devset(TASK_SETS["real"], root, verify=False)
    real = [e for e in real if e["label"] in model.classes[:keywords] and e["corpus"] not in trained_corpora]
    neg_folder, negative = load_devset(TASK_SETS["negative"], root, verify=False)
    real_post = [posteriors(model, sf.read(str(real_folder / e["audio"]), dtype="float32")[0]) for e in real]
    neg_post, samples = [], 0
    for e in negative:  # one clip in memory at a time: the set is 45 min of audio
        audio = sf.read(str(neg_folder / e["audio"]), dtype="float32")[0]
        neg_post.append(posteriors(model, audio))
        samples += len(audio)  # the end silence is not an hour of speech
    hours = samples / model.sample_rate / 3600
    trials = []
    for frames in smooth_frames:
        for threshold in thresholds:
            for shortest in min_frames:
                def run(post, frames=frames, threshold=threshold, shortest=shortest):
                    d = KeywordDetector(model.classes, keywords, smooth_frames=frames, threshold=threshold,
                                        refractory_frames=refractory, min_frames=shortest)
                    return d.push(post[:, None, :]) + d.flush()
                right = np.mean([(top_event(run(p)) or {}).get("label") == e["label"]
                                 for p, e in zip(real_post, real, strict=True)])
                alarms = sum(len(run(p)) for p in neg_post) / hours
                trials.append({"smooth_frames": frames, "threshold": threshold, "min_frames": shortest,
                               "real_top1_event": round(float(right), 4), "false_alarms_per_hour": round(alarms, 2)})
                log(f"detector smooth {frames} threshold {threshold} min_frames {shortest}: real top-1 {right:.3f}, "
                    f"false alarms/h {alarms:.1f}")
    bound = max_false_alarms
    ok = [t for t in trials if t["false_alarms_per_hour"] <= bound]
    ceiling = max(t["real_top1_event"] for t in trials)
    if not ok or max(t["real_top1_event"] for t in ok) < min_share * ceiling:
        bound = fallback_false_alarms
        ok = [t for t in trials if t["false_alarms_per_hour"] <= bound]
    best = max(ok, key=lambda t: (t["real_top1_event"], -t["false_alarms_per_hour"], -t["min_frames"])) if ok else \
        min(trials, key=lambda t: (t["false_alarms_per_hour"], -t["real_top1_event"], t["min_frames"]))
    return {"smooth_frames": best["smooth_frames"], "threshold": best["threshold"], "min_frames": best["min_frames"],
            "trials": trials, "pareto": pareto_front(trials),
            "max_false_alarms_per_hour": max_false_alarms, "fallback_false_alarms_per_hour": fallback_false_alarms,
            "bound_used": bound if ok else None,
            "chosen": best}


def pareto_front(trials: list[dict]) -> list[dict]:
    """The trials that no other trial beats on real top-1 without more false alarms (or on false alarms
    without lower top-1), fewest alarms first; one per (alarms, top-1) point."""
    front: list[dict] = []
    for t in sorted(trials, key=lambda t: (t["false_alarms_per_hour"], -t["real_top1_event"])):
        if not front or t["real_top1_event"] > front[-1]["real_top1_event"]:
            front.append(t)
    return front


def _confusions(rows: list[dict], keywords: tuple[str, ...]) -> dict[str, int]:
    """Most frequent (true -> predicted) mistakes of the argmax decision on keyword clips."""
    counts: dict[str, int] = {}
    for r in rows:
        if r["label"] in keywords and r["argmax"] != r["label"]:
            key = f"{r['label']}->{r['argmax']}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:10])


def evaluate(models: list[str], root: str | Path | None = None, weights: dict[str, str] | None = None,
             limit: int | None = None, log: Callable[[str], None] = print) -> dict:
    from wavestream.data.devset import devset_dir
    results = {"task": "kws", "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               "devsets": {}, "systems": {}}
    for key, task in TASK_SETS.items():
        checksum = devset_dir(root, task) / "checksum.txt"
        results["devsets"][key] = {"task": task, "checksum": checksum.read_text().split()[0]
                                   if checksum.exists() else None}
    from .harness import _machine
    results["machine"] = _machine()
    for name in models:
        results["systems"][name] = evaluate_model(name, root, (weights or {}).get(name), limit, log)
    return results


# -- report -----------------------------------------------------------------------------------------

def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f} %"


def _num(v, pattern: str = "{:.2f}") -> str:
    return "—" if v is None else pattern.format(v)


def markdown(results: dict, command: str) -> str:
    systems = results["systems"]
    lines = ["# kws evaluation", "",
             f"{results['date']}. Reproduce: `{command}`", "",
             f"Machine: {results['machine']['cpu']}, one thread.", "",
             "| model | params | synthetic top-1 (argmax / event) | **real top-1** (argmax / event) | "
             "real unknown+silence rejected | false alarms / h (speech / noise+music) | delay median / p90 ms | "
             "RTF | step / recompute | MACs/s | SynOps/s | spike rate |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in systems.items():
        syn, real, fa = s["synthetic"], s["real"], s["false_alarms_per_hour"]
        label = name + ("" if s.get("trained") in (None, True) else " (untrained)")
        lines.append(
            f"| {label} | {s['parameters'] / 1e3:.0f} k "
            f"| {_pct(syn.get('top1_argmax'))} / {_pct(syn.get('top1_event'))} "
            f"| {_pct(real.get('top1_argmax'))} / {_pct(real.get('top1_event'))} | {_pct(real.get('rejection'))} "
            f"| {_num(fa.get('speech'), '{:.1f}')} / {_num(fa.get('noise/music'), '{:.1f}')} "
            f"| {_num(_ms(real.get('delay_median_s')), '{:.0f}')} / {_num(_ms(real.get('delay_p90_s')), '{:.0f}')} "
            f"| {s['rtf']:.4f} | {s['streaming']['step_ms']:.3f} / {s['streaming']['recompute_ms']:.2f} ms "
            f"| {s['ops']['macs_per_s'] / 1e6:.1f} M | {s['ops']['synops_per_s'] / 1e6:.2f} M "
            f"| {_pct(s['ops'].get('spike_rate'))} |")
    conditions = sorted({c for s in systems.values() for c in s["real"].get("by_condition", {})})
    if conditions:
        lines += ["", "Real-speech top-1 (argmax / event) by condition:", "",
                  "| model | " + " | ".join(conditions) + " |", "|---|" + "---|" * len(conditions)]
        for name, s in systems.items():
            by = s["real"]["by_condition"]
            lines.append(f"| {name} | " + " | ".join(
                f"{_pct(by.get(c, {}).get('top1_argmax'))} / {_pct(by.get(c, {}).get('top1_event'))}"
                for c in conditions) + " |")
        talkers = sorted({t for s in systems.values() for t in s["real"].get("by_talker", {})})
        if talkers:
            lines += ["", "Real-speech top-1 (argmax / event) by talker, over the conditions:", "",
                      "| model | " + " | ".join(talkers) + " |", "|---|" + "---|" * len(talkers)]
            for name, s in systems.items():
                by, trained = s["real"].get("by_talker", {}), s["real"].get("trained_talkers", [])
                lines.append(f"| {name} | " + " | ".join(
                    f"{_pct(by.get(t, {}).get('top1_argmax'))} / {_pct(by.get(t, {}).get('top1_event'))}"
                    + (" (trained on)" if t in trained else "") for t in talkers) + " |")
            for name, s in systems.items():
                if s["real"].get("trained_on"):
                    held = s["real"]["held_out"]
                    lines += ["", f"{name} trained on the recorded dev talkers of {', '.join(s['real']['trained_on'])};"
                              f" on the other talkers (held out) its real-speech top-1 is "
                              f"{_pct(held.get('top1_argmax'))} / {_pct(held.get('top1_event'))}."]
        lines += ["", "Real-speech top-1 (argmax / event) of the same keyword clips cut where the word ends, as a "
                  "tightly trimmed recording is (the model then hears only its end silence after the word):", ""]
        lines += [f"- {name}: {_pct(s['real'].get('cut_at_word_end', {}).get('top1_argmax'))} / "
                  f"{_pct(s['real'].get('cut_at_word_end', {}).get('top1_event'))}" for name, s in systems.items()]
    lines += ["", "Most frequent real-speech confusions (true->predicted: count):", ""]
    lines += [f"- {name}: " + (", ".join(f"{k}: {v}" for k, v in s["real"].get("confusions", {}).items()) or "none")
              for name, s in systems.items()]
    lines += ["", "Dev sets (`wavestream data devset --task keywords,keywords-real,keywords-negative`):", "",
              "- synthetic (`keywords`): 300 clips of 2 s, dev TTS voices (held out from training), balanced over "
              "the 20 keywords, unknown words and background, noise 0-20 dB, rooms, speed, band-limiting.",
              "- real (`keywords-real`): the recorded English digits of four talkers kept out of training unless a "
              "run's `real_corpora` names them (Tux Paint's 2 talkers, US and British; saytime; spokennumbers; the "
              "talkers a model trained on are marked above) in 5 conditions (quiet, 20/10/5 dB dev noise or "
              "music, a room at 15 dB), plus 40 recorded English non-keyword words and 20 background-only clips.",
              "- negative (`keywords-negative`): 30 min of dev speech with no keyword (recorded talkers and TTS "
              "sentences without keyword words, half over noise) and 15 min of noise/music: false alarms per hour.",
              "", "Definitions: argmax = the keyword whose smoothed posterior peaks highest in the clip (no "
              "threshold); event = the highest-scoring event of the model's detector (none = wrong); delay = "
              "when the stream gets the event (it is sent when it closes: the end of the first frame back under "
              "the threshold) minus the end of the word, over correct events; step / recompute = one 10 ms "
              "streaming step vs recomputing a theta-frame window; MACs and "
              "SynOps per second of audio over the linear maps and LMU memories (log-mel front end excluded), SynOps "
              "counting one accumulate per spike per target."]
    return "\n".join(lines) + "\n"


def _ms(v):
    return None if v is None else 1000 * v


def write_report(results: dict, out: str | Path, command: str) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({**results, "command": command}, indent=1) + "\n")
    (out / "README.md").write_text(markdown(results, command))
    return [out / "results.json", out / "README.md"]
