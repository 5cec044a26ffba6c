"""Why does ``separate`` underfit? Data, loss and alignment checks on the recipe's own training mixtures.

Draws training mixtures exactly as the recipe does (``wavestream.train.separate.dataset`` on the run's
config, the loader's seed, whole batches of ``batch_size`` consecutive indices: every ``--stride``-th
step from step 0), and measures per source:

- data: active-speech share of the segment (energy VAD: 20 ms frames within ``VAD_DB`` dB of the
  source's loudest), near-silent sources (< 0.5 s active, or 30 dB under the other source), the
  measured overlap of active speech against the config's overlap, the level difference of the whole
  segment and of active speech against the config's ``sir_db``, noise / reverb shares, the target's
  corpus, TTS, the clips it is made of (length, DNSMOS BAK);
- model (``--run``/last.safetensors, read only, built with the recipe's ``build_model``): PIT SI-SDR
  per source, and tables of it by overlap, active share, corpus, TTS, noise / reverb, level; the
  mixture's own SI-SDR (the baseline); the per-example gradient norm of the recipe's loss, and how
  much of a batch's gradient its worst example holds;
- alignment: the outputs' SI-SDR against the targets shifted by -64..+64 samples around the recipe's
  ``aligned`` (the best shift should be 0);
- the loss on a (nearly) silent target: analytic cases through ``losses.si_sdr``;
- easy cases: a second draw of fully-overlapped, dry, noiseless mixtures (same training split), split
  by the two talkers' median F0 (the corpora carry no gender; an F0 ratio >= 1.5 stands in for it).

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/separate_diagnosis.py [--run runs/separate] \\
        [--stride 80] [--easy 80] [--no-grad]

Data alone, for another config's data settings (no model, no run needed; also times ``ds[i]``, the
loader's work per mixture), e.g. the dense mixtures against the shipped recipe's, 200 mixtures each:

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/separate_diagnosis.py --data-only --steps 4000 \\
        --config wavestream/train/configs/separate-dense.json [--data '{"trim_silence": false}']
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from wavestream.data.quality import is_tts
from wavestream.train import separate as recipe
from wavestream.train.loop import load_config
from wavestream.train.losses import si_sdr
from wavestream.train.waveform import aligned, crop_to_hop

RATE = 16000
FRAME = 320  # 20 ms
VAD_DB = 30.0  # a frame is active within this many dB of the source's loudest frame
SILENT_S = 0.5
QUIET_DB = 30.0


# -- measurements of the data ---------------------------------------------------------------------

def frame_db(x: np.ndarray) -> np.ndarray:
    n = len(x) // FRAME * FRAME
    e = (x[:n].astype(np.float64).reshape(-1, FRAME) ** 2).mean(1)
    return 10 * np.log10(e + 1e-20)


def active(x: np.ndarray) -> np.ndarray:
    db = frame_db(x)
    return db > db.max() - VAD_DB


def median_f0(x: np.ndarray) -> float:
    """Median F0 (Hz) of the voiced 40 ms frames (normalized autocorrelation peak > 0.5 at 60-400 Hz)."""
    w = 640
    n = len(x) // w * w
    if n == 0:
        return float("nan")
    frames = x[:n].reshape(-1, w).astype(np.float64)
    db = 10 * np.log10((frames ** 2).mean(1) + 1e-20)
    frames = frames[db > db.max() - 25]
    frames = frames - frames.mean(1, keepdims=True)
    spec = np.fft.rfft(frames, 2 * w)
    ac = np.fft.irfft(np.abs(spec) ** 2)[:, :w]
    ac = ac / (ac[:, :1] + 1e-20)
    lo, hi = RATE // 400, RATE // 60
    lag = lo + ac[:, lo:hi].argmax(1)
    voiced = ac[np.arange(len(ac)), lag] > 0.5
    return float(np.median(RATE / lag[voiced])) if voiced.any() else float("nan")


def energy_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-20))


class ClipLog:
    """Wraps a pool's ``read`` to note the speech clips each mixture is built from (no RNG draws)."""

    def __init__(self, pools):
        self.read, self.clips = pools.read, []
        pools.read = self

    def __call__(self, entry: dict) -> np.ndarray:
        if entry.get("kind") == "speech":
            self.clips.append(entry)
        return self.read(entry)


def draw(ds, indices: list[int]) -> list[dict]:
    log = ClipLog(ds.pools)
    corpus_of = {e["speaker"]: e["corpus"] for e in ds.pools.speech}
    items = []
    for i in indices:
        log.clips = []
        mixture, sources, info = ds.synthesize(ds.rng(i))
        n_a = int(ds.samples / (2 - info["overlap"]))
        # the speaker names tell the two talkers' clips apart
        clips = [[e for e in log.clips if e["speaker"] == s] for s in info["speakers"]]
        acts = [active(s) for s in sources]
        both = acts[0] & acts[1]
        src = []
        for k in range(2):
            other = 1 - k
            src.append({
                "corpus": corpus_of[info["speakers"][k]], "tts": is_tts({"corpus": corpus_of[info["speakers"][k]]}),
                "active_s": acts[k].sum() * FRAME / RATE, "active_share": acts[k].mean(),
                "overlap": both.sum() / max(acts[k].sum(), 1),
                "level_vs_other_db": energy_db(sources[k]) - energy_db(sources[other]),
                "active_level_vs_other_db": (energy_db(sources[k][np.repeat(acts[k], FRAME)[:len(sources[k])]])
                                             - energy_db(sources[other][np.repeat(acts[other], FRAME)
                                                                        [:len(sources[other])]])),
                "clip_s": [e["duration"] for e in clips[k]],
                "bak": [e.get("dnsmos", {}).get("bak") for e in clips[k] if not is_tts(e)],
                "dfn": any("cleaning" in e for e in clips[k]),
                "f0": median_f0(sources[k]),
            })
        for k in range(2):
            s = src[k]
            s["silent"] = bool(s["active_s"] < SILENT_S or s["level_vs_other_db"] < -QUIET_DB)
        items.append({"index": i, "info": info, "mixture": mixture, "sources": sources, "src": src,
                      "span_s": n_a / RATE, "check": None})
    return items


# -- the model ------------------------------------------------------------------------------------

def run_model(model, items: list[dict], grad: bool) -> None:
    """Per item: PIT SI-SDR per source (the recipe's loss), mixture baseline per source, outputs in
    target order (unaligned, for the shift scan), per-example gradient norm of -SI-SDR."""
    params = [p for p in model.parameters() if p.requires_grad]
    for it in items:
        mixture = torch.from_numpy(it["mixture"])[None, None]
        sources = torch.from_numpy(it["sources"])[None]
        mixture, sources = crop_to_hop(mixture, sources, hop=model.hop)
        with torch.set_grad_enabled(grad):
            raw = model(mixture)
            out, ref = aligned(raw, sources, model.latency)
            score, ordered = recipe.pit_si_sdr(out, ref)
            if grad:
                model.zero_grad(set_to_none=True)
                (-score.mean()).backward()
                it["grad_norm"] = float(torch.sqrt(sum((p.grad ** 2).sum() for p in params)))
                it["grad"] = torch.cat([p.grad.flatten() for p in params]).clone()
        swapped = not torch.equal(ordered, out)
        per = si_sdr(ordered.detach(), ref)[0]
        base = si_sdr(mixture[..., :ref.shape[-1]].expand_as(ref), ref)[0]
        raw = raw.detach()[0]
        it["out_full"] = raw.flip(0) if swapped else raw
        it["score"] = float(score.detach())
        for k in range(2):
            it["src"][k]["si_sdr"] = float(per[k])
            it["src"][k]["baseline"] = float(base[k])


def shift_scan(items: list[dict], latency: int, shifts=range(-64, 65)) -> dict[int, float]:
    """Mean SI-SDR of the outputs (in PIT order) against the targets delayed by ``latency + shift``,
    on a fixed window of samples so that every shift scores the same stretch."""
    est = torch.stack([it["out_full"] for it in items])
    ref = torch.stack([torch.from_numpy(it["sources"]) for it in items])
    n = min(est.shape[-1], ref.shape[-1])
    lo, hi = 64, n - 128
    res = {}
    for d in shifts:
        k = latency + d  # output sample t + k answers target sample t
        res[d] = float(si_sdr(est[..., lo + k:hi + k], ref[..., lo:hi]).mean())
    return res


# -- tables ---------------------------------------------------------------------------------------

def stats(values: list[float]) -> str:
    v = np.asarray(values, float)
    if not len(v):
        return "-"
    return f"{np.mean(v):6.2f} {np.median(v):6.2f} {np.percentile(v, 10):6.2f} {np.mean(v < 0):5.0%}"


def table(title: str, rows: list[dict], key, order=None) -> None:
    groups = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r)
    total = np.mean([r["si_sdr"] for r in rows])
    print(f"\n{title}  (per source; mean over all {total:.2f} dB)")
    print(f"{'group':<24} {'n':>4} {'share':>6} | SI-SDR mean  med   p10  <0dB | base  | SI-SDRi | pull on mean")
    for g in (order or sorted(groups)):
        rs = groups.get(g, [])
        if not rs:
            continue
        s = [r["si_sdr"] for r in rs]
        b = [r["baseline"] for r in rs]
        pull = len(rs) / len(rows) * (np.mean(s) - total)
        print(f"{str(g):<24} {len(rs):4d} {len(rs) / len(rows):6.1%} | {stats(s)} | {np.mean(b):5.2f} | "
              f"{np.mean(s) - np.mean(b):6.2f}  | {pull:+6.2f}")


def bin_of(x: float, edges: list[float], fmt="{:.2g}") -> str:
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        if lo <= x < hi:
            return f"[{fmt.format(lo)}, {fmt.format(hi)})"
    return f">= {fmt.format(edges[-1])}" if x >= edges[-1] else f"< {fmt.format(edges[0])}"


def pct(values, qs=(10, 25, 50, 75, 90)) -> str:
    v = np.asarray(values, float)
    return " ".join(f"p{q}={np.percentile(v, q):.2f}" for q in qs) + f" mean={v.mean():.2f}"


def custom_backward_check(model, item: dict) -> None:
    """The recipe's loss gradient through the training path's own backward passes (PReLU, cLN, depthwise
    taps) against autograd's graph of the plain layers, at full size on a real mixture."""
    from torch import nn

    from wavestream.models.separate import PReLU
    from wavestream.streaming import CausalConv1d, CumulativeLayerNorm
    mixture = torch.from_numpy(item["mixture"])[None, None]
    sources = torch.from_numpy(item["sources"])[None]
    mixture, sources = crop_to_hop(mixture, sources, hop=model.hop)
    grads = []
    saved = CumulativeLayerNorm.fused_backward, CausalConv1d.fused_backward, PReLU.forward
    try:
        for plain in (False, True):
            if plain:
                CumulativeLayerNorm.fused_backward = CausalConv1d.fused_backward = False
                PReLU.forward = nn.PReLU.forward
            out, ref = aligned(model(mixture), sources, model.latency)
            loss = -recipe.pit_si_sdr(out, ref)[0].mean()
            grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(model.parameters()))]))
    finally:
        CumulativeLayerNorm.fused_backward, CausalConv1d.fused_backward, PReLU.forward = saved
    rel = float((grads[0] - grads[1]).norm() / grads[1].norm())
    print(f"\nCustom backward passes vs plain autograd, full model, recipe loss, one mixture: |g - g_ref| / |g_ref| "
          f"= {rel:.1e}")


def learning_curve(log: Path, every: int = 1000) -> None:
    """Mean training SI-SDR (the log's batch figures) per ``every`` steps."""
    if not log.exists():
        return
    rows = defaultdict(list)
    for line in log.read_text().splitlines():
        if " si_sdr=" in line and " step " in line and "dev" not in line:
            step = int(line.split(" step ")[1].split()[0])
            rows[(step - 1) // every].append(float(line.split(" si_sdr=")[1].split()[0]))
    print(f"\nTraining SI-SDR in {log} (mean of the logged batches per {every} steps): " +
          ", ".join(f"{k * every}-{(k + 1) * every}: {np.mean(v):.2f}" for k, v in sorted(rows.items())))


def silent_target_cases() -> None:
    print("\nLoss on (nearly) silent targets: losses.si_sdr(estimate, target), eps=1e-8, 4 s at 16 kHz")
    g = torch.Generator().manual_seed(0)
    speech = torch.randn(1, 64000, generator=g) * 0.05  # ~-26 dBFS, in the recipe's level range
    leak = torch.randn(1, 64000, generator=g) * 0.05
    for name, target, est in [
        ("target all zeros, est = other talker", torch.zeros(1, 64000), leak),
        ("target all zeros, est = 1e-3 x other", torch.zeros(1, 64000), leak * 1e-3),
        ("target -30 dB, est = target + other -10 dB", speech * 0.0316, speech * 0.0316 + leak * 0.01),
        ("target -30 dB, est = target + other", speech * 0.0316, speech * 0.0316 + leak),
        ("target 0 dB, est = target + other", speech, speech + leak),
    ]:
        est = est.clone().requires_grad_(True)
        val = si_sdr(est, target)
        val.sum().backward()
        print(f"  {name:<44} SI-SDR {float(val.detach()):8.2f} dB  |d SI-SDR / d est| x |est| = "
              f"{float(est.grad.norm() * est.detach().norm()):8.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="runs/separate")
    ap.add_argument("--checkpoint", default="last")
    ap.add_argument("--stride", type=int, default=80, help="every stride-th step's batch from step 0")
    ap.add_argument("--steps", type=int, default=8000, help="steps covered (the run's steps so far)")
    ap.add_argument("--easy", type=int, default=80, help="fully-overlapped dry noiseless mixtures drawn")
    ap.add_argument("--no-grad", action="store_true", help="skip per-example gradients")
    ap.add_argument("--json", default=None, help="write per-source rows here")
    ap.add_argument("--config", default=None, help="take the data settings from this recipe config, not the run's")
    ap.add_argument("--data", default=None, metavar="JSON",
                    help="override data settings, e.g. '{\"pause_s\": [0, 0.1]}'")
    ap.add_argument("--data-only", action="store_true", help="measure the data and time the loader; no model")
    args = ap.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    run = Path(args.run)
    last = json.loads((run / "last.json").read_text()) if not args.data_only else {}
    if args.config:
        config = load_config(args.config, recipe.SECTIONS)
    else:
        config = last.get("run", {}).get("config") or load_config(recipe.DEFAULT_CONFIG, recipe.SECTIONS)
    data = config["data"] = {**config["data"], **json.loads(args.data or "{}")}
    bs = data["batch_size"]
    ds = recipe.dataset(data, "train", max(args.steps, config["train"]["steps"]) * bs, data["seconds"],
                         data.get("seed", 0))
    indices = [s * bs + j for s in range(0, args.steps, args.stride) for j in range(bs)]
    m0, s0 = ds[indices[0]]
    items = draw(ds, indices)
    assert np.array_equal(items[0]["mixture"], m0.numpy()[0]) and np.array_equal(items[0]["sources"], s0.numpy())
    print(f"{len(items)} training mixtures of the recipe's stream (seed {data.get('seed', 0)}, batches of {bs} at "
          f"steps 0, {args.stride}, ..., {args.steps - args.stride}), config data {json.dumps(data)}")

    # -- 1. data ----------------------------------------------------------------------------------
    src = [s for it in items for s in it["src"]]
    info = [it["info"] for it in items]
    print("\n== Data (per source unless said) ==")
    print(f"active-speech share of the 4 s segment: {pct([s['active_share'] for s in src])}")
    print(f"active seconds: {pct([s['active_s'] for s in src])}")
    print(f"talker's span (config overlap -> span = 4 s / (2 - overlap)): {pct([it['span_s'] for it in items])} s")
    print(f"sources near-silent (< {SILENT_S} s active or {QUIET_DB:.0f} dB under the other): "
          f"{np.mean([s['silent'] for s in src]):.1%}; < 1 s active: {np.mean([s['active_s'] < 1 for s in src]):.1%}; "
          f"mixtures with one: {np.mean([any(s['silent'] for s in it['src']) for it in items]):.1%}")
    cfg_ov = np.array([i["overlap"] for i in info])
    meas_ov = np.array([np.mean([s["overlap"] for s in it["src"]]) for it in items])
    print(f"overlap, config (share of each talker's span): {pct(cfg_ov)}")
    print(f"overlap, measured (share of a talker's active frames where the other is active too): {pct(meas_ov)}")
    print(f"  measured - config: {pct(meas_ov - cfg_ov)}")
    both_frames = [np.mean(active(it["sources"][0]) & active(it["sources"][1])) for it in items]
    print(f"  share of the segment where both talk: {pct(both_frames)}")
    sir = np.array([i["sir_db"] for i in info])
    seg = np.array([it["src"][0]["level_vs_other_db"] for it in items])
    act = np.array([it["src"][0]["active_level_vs_other_db"] for it in items])
    print(f"level difference a - b, config sir_db: {pct(sir)}")
    print(f"  measured on the segment (reverb changes it): {pct(seg)}; |measured - config| > 1 dB: "
          f"{np.mean(np.abs(seg - sir) > 1):.1%}")
    print(f"  on active speech only: {pct(act)}; |a - b| > 10 dB: {np.mean(np.abs(act) > 10):.1%}")
    noisy = np.mean(["snr_db" in i for i in info])
    reverb = np.mean([i.get("reverb", False) for i in info])
    print(f"with noise: {noisy:.1%} (config noise_prob {data.get('noise_prob')}); with rooms: {reverb:.1%} (config "
          f"reverb_prob {data.get('reverb_prob')}); both: "
          f"{np.mean([bool('snr_db' in i and i.get('reverb')) for i in info]):.1%}")
    print("  targets: the noise is added to the mixture only (targets clean); with a room the mixture gets each "
          "talker's full response, the target its direct path + first 50 ms (SpeakerMixtures.synthesize)")
    mix_sum = [float(np.abs(it["mixture"] - it["sources"].sum(0)).max() / np.abs(it["mixture"]).max())
               for it in items if "snr_db" not in it["info"] and not it["info"].get("reverb")]
    print(f"  dry noiseless mixtures: max |mixture - sum of targets| / max |mixture| = {max(mix_sum):.2e} "
          f"(targets at the mixture's scale)")
    print(f"TTS targets: {np.mean([s['tts'] for s in src]):.1%}; targets from cleaned (-dfn) clips: "
          f"{np.mean([s['dfn'] for s in src]):.1%}")
    corp = defaultdict(int)
    for s in src:
        corp[s["corpus"]] += 1
    print("target corpora: " + ", ".join(f"{k} {v / len(src):.1%}"
                                         for k, v in sorted(corp.items(), key=lambda x: -x[1])))
    baks = [b for s in src for b in s["bak"] if b is not None]
    print(f"DNSMOS BAK of the recorded clips targets are made of: {pct(baks, (0, 10, 50))} (filter: >= 3.7, applied: "
          f"min {min(baks):.2f})")
    clip_s = [d for s in src for d in s["clip_s"]]
    nclips = [len(s["clip_s"]) for s in src]
    print(f"clip lengths read for targets: {pct(clip_s)} s; < 2 s: {np.mean(np.array(clip_s) < 2):.1%}; "
          f"clips per source: {pct(nclips, (10, 50, 90))}")

    if args.data_only:
        timed = indices[:40]  # the clips are in the page cache by now: this is the synthesis, not the disk
        times = []
        for i in timed:
            t0 = time.perf_counter()
            ds[i]
            times.append(time.perf_counter() - t0)
        print(f"\nds[i] (one mixture as the loader makes it), {len(timed)} items, ms: "
              f"{pct(np.array(times) * 1000, (10, 50, 90))}")
        print(f"\n({time.time() - started:.0f} s)")
        return

    # -- 2-3. model -------------------------------------------------------------------------------
    model = recipe.build_model(config)
    model.load_state_dict(load_file(str(run / f"{args.checkpoint}.safetensors")))
    model.eval()
    run_model(model, items, grad=not args.no_grad)
    for k in range(2):
        for it in items:
            it["src"][k]["noise_reverb"] = ("noise+room" if "snr_db" in it["info"] and it["info"].get("reverb") else
                                            "noise" if "snr_db" in it["info"] else
                                            "room" if it["info"].get("reverb") else "dry")
            it["src"][k]["cfg_overlap"] = it["info"]["overlap"]
    print(f"\n== Model {run}/{args.checkpoint}.safetensors (step {last['step']}) on these mixtures ==")
    scores = [it["score"] for it in items]
    print(f"PIT SI-SDR per mixture (the recipe's training figure): {pct(scores)}; per source: "
          f"{pct([s['si_sdr'] for s in src])}")
    print(f"mixture baseline SI-SDR per source: {pct([s['baseline'] for s in src])}; SI-SDRi mean "
          f"{np.mean([s['si_sdr'] - s['baseline'] for s in src]):.2f} dB")
    table("By config overlap", src, lambda s: bin_of(s["cfg_overlap"], [0.25, 0.5, 0.75, 0.9, 1.0001]))
    table("By measured overlap (share of own active frames with the other active)", src,
          lambda s: bin_of(s["overlap"], [0, 0.25, 0.5, 0.75, 0.9, 1.0001]))
    table("By active-speech share of the segment", src,
          lambda s: bin_of(s["active_share"], [0, 0.25, 0.5, 0.75, 1.0001]))
    table("By near-silence", src, lambda s: "near-silent" if s["silent"] else "talks")
    table("By level vs the other talker (active speech, dB)", src,
          lambda s: bin_of(s["active_level_vs_other_db"], [-60, -10, -5, 0, 5, 10, 60], "{:g}"))
    table("By noise / room", src, lambda s: s["noise_reverb"], ["dry", "noise", "room", "noise+room"])
    table("By TTS", src, lambda s: "TTS" if s["tts"] else "recorded")
    table("By target corpus", src, lambda s: s["corpus"])
    # pairs
    pair = defaultdict(list)
    for it in items:
        kinds = sorted("TTS" if s["tts"] else "rec" for s in it["src"])
        pair["+".join(kinds)].append(it["score"])
    print("\nBy pair kind (per mixture): " + "; ".join(f"{k}: n={len(v)} mean {np.mean(v):.2f}" for k, v in
                                                   sorted(pair.items())))

    if not args.no_grad:
        g = np.array([it["grad_norm"] for it in items])
        print(f"\nPer-example gradient norm of -SI-SDR (before clipping at 5): {pct(g)}")
        r = np.corrcoef(g, scores)[0, 1]
        print(f"  correlation with the example's SI-SDR: {r:+.2f}")
        shares, cos_worst = [], []
        for b in range(0, len(items), bs):
            batch = items[b:b + bs]
            norms = np.array([it["grad_norm"] for it in batch])
            shares.append(norms.max() / norms.sum())
            total = sum(it["grad"] for it in batch)
            worst = batch[int(np.argmax(norms))]["grad"]
            cos_worst.append(float(torch.dot(total, worst) / (total.norm() * worst.norm() * 1.0)))
        print(f"  within a batch of {bs}: the largest example's share of the summed norms {pct(shares, (50, 90))} "
              f"(1/{bs} = {1 / bs:.2f} if even); cosine(batch gradient, that example's) {pct(cos_worst, (50, 90))}")
        sil = [it["grad_norm"] for it in items if any(s["silent"] for s in it["src"])]
        print(f"  mixtures with a near-silent source: n={len(sil)}, grad norm mean "
              f"{np.mean(sil) if sil else float('nan'):.2f} vs {g.mean():.2f} overall")
        for it in items:
            it.pop("grad", None)
    silent_target_cases()
    custom_backward_check(model, items[0])
    learning_curve(run / "train.log")

    scan = shift_scan(items, model.latency)
    best = max(scan, key=scan.get)
    print(f"\nAlignment: mean SI-SDR of the outputs vs targets shifted by d samples beyond the recipe's latency "
          f"({model.latency}): best d = {best:+d} ({scan[best]:.2f} dB); d=0 {scan[0]:.2f} dB; " +
          ", ".join(f"d={d:+d} {scan[d]:.2f}" for d in (-64, -32, -8, -2, -1, 1, 2, 8, 32, 64)))

    # -- 3. easy cases ----------------------------------------------------------------------------
    if args.easy:
        easy_data = {**data, "overlap": [1.0, 1.0], "noise_prob": 0.0, "reverb_prob": 0.0}
        eds = recipe.dataset(easy_data, "train", args.easy, data["seconds"], 4242)
        easy = draw(eds, list(range(args.easy)))
        run_model(model, easy, grad=False)
        rows = []
        for it in easy:
            f0 = [s["f0"] for s in it["src"]]
            ratio = max(f0) / min(f0) if all(np.isfinite(f0)) else float("nan")
            rec = not any(s["tts"] for s in it["src"])
            for s in it["src"]:
                s["group"] = ("recorded pair" if rec else "with TTS") + (
                    ", F0 ratio >= 1.5" if ratio >= 1.5 else ", F0 ratio < 1.5")
                rows.append(s)
        print(f"\n== Easy cases: {args.easy} training-split mixtures, overlap 1.0, dry, no noise (seed 4242) ==")
        table("By pair (F0 ratio stands in for different gender)", rows, lambda s: s["group"])
        table("By level vs the other (active speech, dB)", rows,
              lambda s: bin_of(s["active_level_vs_other_db"], [-60, -5, 0, 5, 60], "{:g}"))
        best_rows = [s for s in rows if s["group"] == "recorded pair, F0 ratio >= 1.5"]
        if best_rows:
            print(f"  recorded pair, F0 ratio >= 1.5: per-source SI-SDR {pct([s['si_sdr'] for s in best_rows])}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{"index": it["index"], "info": it["info"], "score": it["score"], "grad_norm": it.get("grad_norm"),
              "src": it["src"]} for it in items], default=float))
    print(f"\n({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
