"""What fires the keyword spotter's false alarms on ``keywords-negative`` (issue 10)?

Rebuilds, in memory, the speech entries each negative clip was made of (the builder's own draws:
``devset.negative_speech`` with the same seeds), checks every rebuilt clip against the stored WAV
(bytes of the 16-bit file, as the builder writes it), runs the shipped models and their event
detectors over the stored clips, and maps every false alarm to the segment it falls in (or a gap).
Writes nothing under data/ or runs/; prints the tables (and, with ``--json``, every alarm).

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/kws_false_alarms.py [--models kws,kws-spiking]
        [--speech-root runs/kws-root] [--json /tmp/fa.json] [--alarms]

Manifests: the stored set (data/devsets, written 2026-11-29 00:41) drew its speech from the dev
manifests of that time; ``data/manifests`` has since gained corpora, so the speech draws are replayed on
the run's snapshot ``runs/kws-root/manifests`` (2026-11-28 23:59, the same speech entries: every clip
without noise comes back byte for byte). The noise manifest of the build was not kept either: for
a clip over noise, each dev noise of ``--noise-root`` (default: today's) is tried in the draw and the
one giving the stored bytes is kept. The noise/music-only clips are not rebuilt (their alarms are
noise-only by construction). A clip that does not come back byte for byte is reported and its alarms
are mapped anyway, marked ``unverified``.

An alarm is mapped to the segment overlapping ``[start - 0.3 s, end]`` of the event most (the
detector reports the first frame above the threshold: the word began a little before), else to a gap
("noise" in a clip over noise, "silence" otherwise). Homophones are checked only where the text is an
English transcript (espeak, flite, codec2 sentences); Tux Paint/KTuberling texts are the English names
of the object the talker says in Russian, Greek or Swedish, and KLettres' are Hungarian letter names:
both are labels, not transcripts (a few letter names that sound like a keyword are listed in
``LETTERS``); Fish Fillets dialogue has no text.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import os
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from wavestream.data import devset
from wavestream.data.keywords import KeywordClips
from wavestream.data.manifest import default_root, load_entries
from wavestream.evaluate.kws import detect, posteriors
from wavestream.models.registry import load_model

REPO = Path(__file__).resolve().parent.parent

#: words that sound the same as a keyword (English, or a common foreign word said the same way)
HOMOPHONES = {
    "zero": ("oh", "o"),
    "one": ("won", "wan"),
    "two": ("to", "too", "tu", "tou"),
    "three": ("thee",),
    "four": ("for", "fore", "fore-", "pour"),
    "five": ("fife",),
    "six": ("sex", "sicks", "sics", "sikhs"),
    "seven": (),
    "eight": ("ate", "ait", "eighth"),
    "nine": ("nein", "nain"),
    "yes": ("yess",),
    "no": ("know", "knows", "noh", "known"),
    "up": ("upp",),
    "down": ("downe",),
    "left": ("lefty",),
    "right": ("write", "rite", "wright", "writes", "rights"),
    "on": ("an",),
    "off": ("of",),
    "stop": ("stopped", "stops"),
    "go": ("goes", "going", "ago"),
}
#: words one sound away from a keyword (rhymes, shared onset + vowel, the keyword inside the word)
NEAR = {
    "zero": ("hero", "nero", "zebra", "sierra", "arrow", "old", "only", "open", "over", "own", "okay", "ocean"),
    "one": ("when", "once", "done", "gun", "fun", "sun", "run", "none", "won't", "want", "son", "ton"),
    "two": ("do", "who", "new", "you", "through", "true", "blue", "shoe", "tooth", "tool", "tube", "soon", "room"),
    "three": ("tree", "free", "tea", "sea", "see", "three-", "tree-", "three's", "street", "green", "agree"),
    "four": ("floor", "door", "more", "or", "your", "before", "forty", "fourth", "far", "war", "store", "boar"),
    "five": ("fine", "fire", "hive", "drive", "alive", "wife", "life", "knife", "by", "fight", "five-"),
    "six": ("sick", "sixth", "fix", "mix", "kicks", "ticks", "bricks", "sticks", "sax", "six-"),
    "seven": ("heaven", "eleven", "seventh", "even", "several"),
    "eight": (
        "hate",
        "wait",
        "weight",
        "late",
        "gate",
        "great",
        "plate",
        "date",
        "straight",
        "they",
        "day",
        "eighty",
        "eat",
        "eighteen",
        "paint",
        "painted",
        "station",
        "table",
        "later",
    ),
    "nine": ("mine", "fine", "line", "night", "nice", "nineteen", "ninety", "time", "nice", "behind", "sign"),
    "yes": ("yet", "less", "yeah", "guess", "chess", "dress", "address", "yellow", "yesterday", "bless"),
    "no": ("now", "nose", "snow", "know", "note", "old", "road", "though", "so", "show", "go", "slow", "boat", "coat"),
    "up": ("cup", "pup", "cap", "up-", "upper", "supper", "top", "shop"),
    "down": (
        "town",
        "gown",
        "brown",
        "crown",
        "clown",
        "noun",
        "round",
        "sound",
        "found",
        "around",
        "ground",
        "dawn",
        "don",
        "done",
    ),
    "left": ("lift", "loft", "theft", "laughed", "lived", "lettuce", "letter", "let", "lost"),
    "right": (
        "light",
        "bright",
        "night",
        "white",
        "fight",
        "might",
        "sight",
        "ride",
        "rice",
        "write",
        "quite",
        "bite",
        "kite",
        "lights",
        "tonight",
    ),
    "on": ("own", "gone", "john", "don", "in", "an", "upon", "one", "long", "song"),
    "off": ("often", "cough", "soft", "offer", "awful", "golf", "across", "cross", "lost"),
    "stop": ("top", "shop", "step", "stock", "drop", "stuff", "stopped", "stomp"),
    "go": (
        "goal",
        "grow",
        "ghost",
        "no",
        "so",
        "show",
        "low",
        "though",
        "gold",
        "coat",
        "boat",
        "road",
        "old",
        "going",
        "gone",
        "good",
        "got",
    ),
}
#: KLettres' Hungarian letter names that sound like a keyword (text = the letter)
LETTERS = {
    "o": ("zero", "oh"),
    "ó": ("zero", "oh"),
    "nny": ("no", "enny"),
    "n": ("one", "en"),
    "t": ("two", "té"),
    "f": ("off", "ef"),
    "jé": ("yes", "jé"),
    "j": ("yes", "jé"),
}
#: Tux Paint's English letter names (keywords-real's "x_filled" words) that sound like a keyword
ENGLISH_LETTERS = {
    "o": ("zero", "same"),
    "h": ("eight", "near"),
    "a": ("eight", "near"),
    "j": ("eight", "near"),
    "k": ("eight", "near"),
    "u": ("two", "near"),
    "q": ("two", "near"),
    "c": ("three", "near"),
    "t": ("three", "near"),
    "n": ("one", "near"),
    "f": ("off", "near"),
    "s": ("yes", "near"),
    "x": ("six", "near"),
    "i": ("five", "near"),
    "y": ("five", "near"),
}
TRANSCRIBED = ("espeak", "flite", "codec2")  # corpora whose text is what the talker says, in English
LABELLED = ("ktuberling", "klettres")  # text = an English object name / a Hungarian letter: a label
ISOLATED = LABELLED  # one word (or letter) said on its own, as a keyword is; the others are sentences or dialogue


def words(text: str) -> list[str]:
    return devset._words(text or "")


def homophone(keyword: str, text: str, corpus: str) -> tuple[str, str] | None:
    """(kind, word): ``same`` (sounds the same as the keyword), ``near`` (one sound away), ``letter``."""
    if corpus == "klettres":
        hit = LETTERS.get((text or "").strip().lower())
        return ("letter", text) if hit and hit[0] == keyword else None
    if corpus == "tuxpaint-en" and (text or "").endswith("_filled"):
        hit = ENGLISH_LETTERS.get(text[0])
        return (hit[1], f"letter {text[0]}") if hit and hit[0] == keyword else None
    if corpus not in TRANSCRIBED:
        return None
    ws = words(text)
    for kind, table in (("same", HOMOPHONES), ("near", NEAR)):
        hit = next((w for w in ws if w in table[keyword]), None)
        if hit:
            return kind, hit
    return None


def words_near(text: str, where: float) -> str:
    """The words around ``where`` (0..1 of the segment) by character position: a rough guess of what was
    said when the event opened (speaking rate is not even, and the event opens after the word began)."""
    ws = text.split()
    if not ws:
        return ""
    ends = np.cumsum([len(w) + 1 for w in ws]) / (len(text) + 1)
    k = int(np.searchsorted(ends, min(max(where, 0.0), 1.0)))
    return " ".join(ws[max(0, k - 2) : k + 1])


# -- the clips' segments ----------------------------------------------------------------------------


def _wav_sha(audio: np.ndarray, rate: int) -> str:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format="WAV", subtype="PCM_16")
    return hashlib.sha256(buf.getvalue()).hexdigest()


def rebuild(devset_root, speech_root, noise_root, log=print) -> tuple[Path, list[dict]]:
    """(folder, clips): each stored clip with ``segments`` (speech clips), ``noise`` and ``verified``."""
    folder, clips = devset.load_devset("keywords-negative", devset_root)
    rate = int((folder / "checksum.txt").read_text().split("rate ")[1].split()[0])
    speech = devset.negative_speech_pool(speech_root)
    data = KeywordClips(speech_root, "dev", rate=rate)
    seen, candidates = set(), []
    for root in (speech_root, noise_root):
        for e in load_entries(root, "noise", "dev"):
            real = os.path.realpath(e["path"])
            if real not in seen and Path(real).exists():
                seen.add(real)
                candidates.append(e)
    n = int(devset.NEGATIVE_SECONDS * rate)
    out = []
    for i, clip in enumerate(clips):
        clip = dict(clip)
        if i >= devset.NEGATIVE_SPEECH:
            clip.update(segments=[], noise=None, verified=None)
            out.append(clip)
            continue
        rng = np.random.default_rng([devset.SEED, 500, i])
        audio, segments = devset.negative_speech(rng, speech, data, n, rate)
        stored = sf.read(str(folder / clip["audio"]), dtype="float32")[0]
        clip.update(segments=segments, noise=None, verified=False)

        def finish(noise, rng=rng, audio=audio):
            r = copy.deepcopy(rng)
            y, snr = devset._negative_over_noise(r, audio, noise, data, n)
            return devset._negative_level(r, y), snr

        try:
            y, snr = finish([])  # raises if the clip drew a noise
            clip["verified"] = _wav_sha(y, rate) == clip["sha256"]["audio"]
        except ValueError:
            for cand in candidates:
                y, snr = finish([cand, cand])  # integers(1) draws nothing; integers(2) draws as integers(L) does
                if np.abs(y - stored).max() < 2 / 32768 and _wav_sha(y, rate) == clip["sha256"]["audio"]:
                    clip.update(noise=cand, verified=True)
                    break
        if not clip["verified"]:
            log(f"clip {clip['id']}: the rebuild does not give the stored bytes; its alarms are marked unverified")
        out.append(clip)
    return folder, out


# -- models -----------------------------------------------------------------------------------------


def locate(event: dict, segments: list[dict], rate: int, lead_s: float = 0.3) -> dict | None:
    lo, hi = (event["start"] - lead_s) * rate, event["end"] * rate
    overlap = [(min(hi, s["end"]) - max(lo, s["start"]), s) for s in segments]
    best = max(overlap, key=lambda o: o[0], default=(0, None))
    return best[1] if best[0] > 0 else None


def alarms_of(model, folder: Path, clips: list[dict], rate: int) -> list[dict]:
    rows = []
    for clip in clips:
        audio = sf.read(str(folder / clip["audio"]), dtype="float32")[0]
        for ev in detect(model, posteriors(model, audio)):
            row = {
                "clip": clip["id"],
                "kind": clip["kind"],
                "snr_db": clip.get("snr_db"),
                "start_s": round(ev["start"], 2),
                "end_s": round(ev["end"], 2),
                "keyword": ev["label"],
                "score": round(float(ev["score"]), 3),
                "verified": clip["verified"],
            }
            seg = locate(ev, clip["segments"], rate) if clip["kind"] == "speech" else None
            if seg is not None:
                e = seg["entry"]
                row.update(
                    corpus=e["corpus"],
                    speaker=e["speaker"],
                    language=e.get("language"),
                    text=e.get("text") or "",
                    segment_s=[round(seg["start"] / rate, 2), round(seg["end"] / rate, 2)],
                    path=os.path.relpath(e["path"], REPO),
                )
                row["words_near"] = (
                    words_near(e.get("text") or "", (ev["start"] * rate - seg["start"]) / (seg["end"] - seg["start"]))
                    if e["corpus"] in TRANSCRIBED
                    else ""
                )
                hit = homophone(ev["label"], e.get("text"), e["corpus"])
                row["homophone"] = list(hit) if hit else None
                others = [k for k in HOMOPHONES if k != ev["label"] and homophone(k, e.get("text"), e["corpus"])]
                row["homophone_of_other_keyword"] = others or None
                row["cause"] = (
                    "homophone"
                    if hit and hit[0] in ("same", "letter")
                    else "near-homophone"
                    if hit
                    else "English speech, no homophone"
                    if e["corpus"] in TRANSCRIBED
                    else "foreign word (labelled)"
                    if e["corpus"] in LABELLED
                    else "untranscribed speech"
                )
            elif clip["kind"] == "speech":
                row.update(corpus=None, cause="gap: noise only" if clip.get("snr_db") is not None else "gap: silence")
            else:
                row.update(corpus=None, cause=f"{clip['kind']} only")
            if clip.get("noise") is not None:
                row["noise"] = clip["noise"]["corpus"]
            rows.append(row)
    return rows


def real_unknowns(model, root) -> list[dict]:
    """Events on keywords-real's recorded non-keyword words and backgrounds."""
    folder, entries = devset.load_devset("keywords-real", root)
    keywords = set(model.classes[:-2])
    rows = []
    for e in entries:
        if e["label"] in keywords:
            continue
        events = detect(model, posteriors(model, sf.read(str(folder / e["audio"]), dtype="float32")[0]))
        word = (e.get("text") or "").split(" (")[0]
        word = re.sub(r"_[a-z]{2}_[A-Z]{2}$", "", word)  # "h_filled_en_GB" -> "h_filled"
        for ev in events:
            rows.append(
                {
                    "clip": e["id"],
                    "label": e["label"],
                    "word": word,
                    "corpus": e.get("corpus"),
                    "condition": e.get("condition"),
                    "keyword": ev["label"],
                    "score": round(float(ev["score"]), 3),
                }
            )
    unknown = sum(e["label"] not in keywords for e in entries)
    return rows, unknown


# -- tables -----------------------------------------------------------------------------------------


def table(title: str, header: list[str], rows: list[list]) -> str:
    out = [f"\n{title}", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def summarize(name: str, alarms: list[dict], clips: list[dict], rate: int) -> str:
    speech = [c for c in clips if c["kind"] == "speech"]
    speech_h = sum(c["duration"] for c in speech) / 3600
    back_h = sum(c["duration"] for c in clips if c["kind"] != "speech") / 3600
    sp = [a for a in alarms if a["kind"] == "speech"]
    lines = [
        f"\n## {name}: {len(sp)} alarms in {speech_h:.2f} h of speech clips = {len(sp) / speech_h:.1f}/h; "
        f"{len(alarms) - len(sp)} in {back_h:.2f} h of noise/music = {(len(alarms) - len(sp)) / back_h:.1f}/h"
    ]
    causes = Counter(a["cause"] for a in sp)
    lines.append(
        table(
            "cause (speech clips)",
            ["cause", "alarms", "share", "per hour of speech clips"],
            [[k, v, f"{100 * v / len(sp):.0f} %", f"{v / speech_h:.1f}"] for k, v in causes.most_common()],
        )
    )
    # per corpus / language: alarms per hour of that corpus's (language's) speech in the set (segments' length)
    speech_s = {}
    for key, title in (("corpus", "by corpus"), ("language", "by language")):
        seconds = speech_s[key] = Counter()
        for c in speech:
            for s in c["segments"]:
                seconds[s["entry"].get(key)] += (s["end"] - s["start"]) / rate
        by = Counter(a.get(key) for a in sp if a["corpus"])
        lines.append(
            table(
                f"{title} (per hour of its speech in the set)",
                [key, "speech min", "alarms", "per hour"],
                [
                    [k, f"{seconds[k] / 60:.1f}", by[k], f"{3600 * by[k] / seconds[k]:.0f}"]
                    for k in sorted(seconds, key=lambda k: -by[k])
                ],
            )
        )
    noisy = [c for c in speech if c.get("snr_db") is not None]
    rows = []
    for label, group in (("quiet", [c for c in speech if c.get("snr_db") is None]), ("over noise", noisy)):
        ids, h = {c["id"] for c in group}, sum(c["duration"] for c in group) / 3600
        k = sum(a["clip"] in ids for a in sp)
        rows.append([label, len(group), k, f"{k / h:.1f}"])
    lines.append(table("speech clips quiet / over noise", ["clips", "n", "alarms", "per hour"], rows))
    seconds = speech_s["corpus"]
    iso_s = sum(v for k, v in seconds.items() if k in ISOLATED)
    iso = sum(a["corpus"] in ISOLATED for a in sp)
    run_s = sum(v for k, v in seconds.items() if k not in ISOLATED)
    lines.append(
        table(
            "isolated words (KTuberling, KLettres) vs running speech",
            ["speech", "min", "alarms", "per hour"],
            [
                ["isolated foreign words", f"{iso_s / 60:.1f}", iso, f"{3600 * iso / iso_s:.0f}"],
                [
                    "running speech",
                    f"{run_s / 60:.1f}",
                    len(sp) - iso - sum(a["corpus"] is None for a in sp),
                    f"{3600 * (len(sp) - iso - sum(a['corpus'] is None for a in sp)) / run_s:.0f}",
                ],
            ],
        )
    )
    lines.append(
        f"\nwithout the isolated foreign words: {(len(sp) - iso) / speech_h:.1f}/h of the same clips, "
        f"{(len(sp) - iso) / (speech_h - iso_s / 3600):.1f}/h with their time taken out"
    )
    repeats = Counter(
        (a["clip"] != b["clip"] and a.get("path") == b.get("path") and a.get("path") is not None)
        for i, a in enumerate(sp)
        for b in sp[i + 1 :]
    )[True]
    lines.append(f"pairs of alarms on the same recording drawn into two clips: {repeats}")
    kw = Counter(a["keyword"] for a in alarms)
    lines.append(
        table(
            "keywords that fire (all clips)",
            ["keyword", "alarms", "of them homophone / near"],
            [
                [
                    k,
                    v,
                    f"{sum(a['keyword'] == k and a['cause'] == 'homophone' for a in alarms)} / "
                    f"{sum(a['keyword'] == k and a['cause'] == 'near-homophone' for a in alarms)}",
                ]
                for k, v in kw.most_common()
            ],
        )
    )
    # without homophones: drop their alarms; or drop the homophone segments from the set (alarms and time)
    same = [a for a in sp if a["cause"] == "homophone"]
    near = [a for a in sp if a["cause"] == "near-homophone"]
    hom_s = sum(
        (s["end"] - s["start"]) / rate
        for c in speech
        for s in c["segments"]
        if any(
            homophone(k, s["entry"].get("text"), s["entry"]["corpus"])
            and homophone(k, s["entry"].get("text"), s["entry"]["corpus"])[0] in ("same", "letter")
            for k in HOMOPHONES
        )
    )
    lines.append(
        f"\nwithout the homophone alarms: {(len(sp) - len(same)) / speech_h:.1f}/h "
        f"(without homophone and near-homophone alarms: {(len(sp) - len(same) - len(near)) / speech_h:.1f}/h); "
        f"segments whose text holds a homophone of any keyword: {hom_s / 60:.1f} min of "
        f"{60 * speech_h:.0f}; dropping them from the set: "
        f"{(len(sp) - len(same)) / (speech_h - hom_s / 3600):.1f}/h"
    )
    return "\n".join(lines)


def alarm_list(name: str, alarms: list[dict]) -> str:
    rows = [
        [
            a["clip"],
            f"{a['start_s']:.2f}",
            a["keyword"],
            a["score"],
            a["corpus"] or "—",
            a.get("speaker", "—"),
            a.get("language") or "—",
            (a.get("text") or "")[:60].replace("|", "/"),
            a.get("words_near") or "—",
            ":".join(a["homophone"]) if a.get("homophone") else "—",
            a["cause"],
            a.get("snr_db") if a.get("snr_db") is not None else "—",
            "" if a["verified"] is not False else "unverified",
        ]
        for a in alarms
    ]
    return table(
        f"{name}: every alarm",
        [
            "clip",
            "s",
            "keyword",
            "score",
            "corpus",
            "speaker",
            "lang",
            "text",
            "≈ words at the event",
            "homophone",
            "cause",
            "snr dB",
            "",
        ],
        rows,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="kws,kws-spiking")
    ap.add_argument("--root", default=None, help="data root holding devsets/ (default: the data root)")
    ap.add_argument(
        "--speech-root",
        default=str(REPO / "runs/kws-root"),
        help="root whose manifests the stored set's speech was drawn from",
    )
    ap.add_argument("--noise-root", default=None, help="root whose dev noises are tried for the noisy clips")
    ap.add_argument("--alarms", action="store_true", help="print every alarm")
    ap.add_argument("--json", default=None, help="write every alarm and the clips' segments here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = args.root or default_root()
    t0 = time.time()
    print(f"load average {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} CPUs")
    folder, clips = rebuild(root, args.speech_root, args.noise_root or root)
    rate = 16000
    speech = [c for c in clips if c["kind"] == "speech"]
    ok = sum(bool(c["verified"]) for c in speech)
    print(
        f"rebuilt {len(speech)} speech clips: {ok} give the stored bytes "
        f"({sum(c.get('snr_db') is not None for c in speech)} over noise); "
        f"{sum(len(c['segments']) for c in speech)} segments ({time.time() - t0:.0f} s)"
    )
    seg_by = Counter(s["entry"]["corpus"] for c in speech for s in c["segments"])
    print("segments by corpus: " + ", ".join(f"{k} {v}" for k, v in seg_by.most_common()))
    report = {
        "clips": [
            {
                "id": c["id"],
                "kind": c["kind"],
                "snr_db": c.get("snr_db"),
                "verified": c["verified"],
                "noise": c["noise"]["path"] if c.get("noise") else None,
                "segments": [
                    {
                        "start": s["start"],
                        "end": s["end"],
                        "path": os.path.relpath(s["entry"]["path"], REPO),
                        "corpus": s["entry"]["corpus"],
                        "speaker": s["entry"]["speaker"],
                        "text": s["entry"].get("text"),
                    }
                    for s in c["segments"]
                ],
            }
            for c in clips
        ],
        "models": {},
    }
    for name in args.models.split(","):
        model = load_model(name)
        det = model.detector_config
        alarms = alarms_of(model, folder, clips, rate)
        print(
            f"\n# {name} (detector: smooth {det['smooth_frames']}, threshold {det['threshold']}, "
            f"min_frames {det.get('min_frames')})"
        )
        print(summarize(name, alarms, clips, rate))
        if args.alarms:
            print(alarm_list(name, alarms))
        real, unknown = real_unknowns(model, root)
        fired = Counter(r["keyword"] for r in real)
        print(
            f"\nkeywords-real non-keyword clips ({unknown}: recorded words + backgrounds): {len(real)} events "
            f"on {len({r['clip'] for r in real})} clips; keywords "
            + ", ".join(f"{k} {v}" for k, v in fired.most_common())
        )
        for r in real:
            hit = homophone(r["keyword"], r["word"], "tuxpaint-en" if r["word"].endswith("_filled") else "espeak")
            print(
                f"  {r['clip']} {r['label']} {r['word']!r} ({r['condition']}) -> {r['keyword']} {r['score']}"
                + (f"  [{hit[0]}: {hit[1]}]" if hit else "")
            )
        report["models"][name] = {"detector": dict(det), "alarms": alarms, "real_unknown_events": real}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, ensure_ascii=False, default=str))
    print(f"\n{time.time() - t0:.0f} s; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
