"""Speech quality metrics: SI-SDR (always), BSS-eval SDR, PESQ-WB, STOI, DNSMOS and ViSQOL when their packages
are installed.

Each metric takes mono float arrays at 16 kHz. ``available_metrics()`` says which ones can run and,
for the others, which package is missing, so reports can say why a column is empty.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
from collections.abc import Callable
from functools import cache

import numpy as np

RATE = 16000
#: metric -> (packages it needs, pip name to install)
REQUIREMENTS = {
    "si_sdr": ((), ""),
    "sdr": (("mir_eval",), "'mir_eval<0.9'"),
    "pesq": (("pesq",), "pesq"),
    "stoi": (("pystoi",), "pystoi"),
    "dnsmos": (("speechmos", "librosa", "pandas", "onnxruntime"), "speechmos librosa pandas onnxruntime"),
    "visqol": (("visqol",), "visqol-python[lattice]"),
}
#: metrics that need the clean reference (DNSMOS does not)
INTRUSIVE = ("si_sdr", "sdr", "pesq", "stoi", "visqol")


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), both signals mean-removed."""
    reference, estimate = _pair(reference, estimate)
    reference = reference - reference.mean()
    estimate = estimate - estimate.mean()
    scale = np.dot(estimate, reference) / (np.dot(reference, reference) + 1e-12)
    target = scale * reference
    residual = estimate - target
    return float(10 * np.log10((np.dot(target, target) + 1e-12) / (np.dot(residual, residual) + 1e-12)))


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """BSS-eval v3 SDR in dB (Vincent et al. 2006) as the separation literature reports it: the estimate may
    differ from the reference by a 512-tap filter without penalty. mir_eval's ``bss_eval_sources`` with one
    reference: a source's SDR does not depend on the other references (only SIR does). NaN for a silent
    estimate, which has no projection on the reference to measure (mir_eval refuses it)."""
    import warnings

    from mir_eval.separation import bss_eval_sources
    reference, estimate = _pair(reference, estimate)
    if not estimate.any():
        return float("nan")
    with warnings.catch_warnings():  # mir_eval 0.8 marks its separation module for removal (pyproject pins <0.9)
        warnings.simplefilter("ignore")
        return float(bss_eval_sources(reference[None], estimate[None], compute_permutation=False)[0][0])


def pesq_wb(reference: np.ndarray, estimate: np.ndarray, rate: int = RATE) -> float:
    """Wide-band PESQ (ITU-T P.862.2) MOS-LQO, 1.04-4.64; NaN when PESQ finds no speech to compare."""
    from pesq import NoUtterancesError, pesq
    reference, estimate = _pair(reference, estimate)
    try:
        return float(pesq(rate, reference, estimate, "wb"))
    except NoUtterancesError:
        return float("nan")


def stoi(reference: np.ndarray, estimate: np.ndarray, rate: int = RATE) -> float:
    from pystoi import stoi as _stoi
    reference, estimate = _pair(reference, estimate)
    return float(_stoi(reference, estimate, rate, extended=False))


def dnsmos(estimate: np.ndarray, rate: int = RATE) -> dict[str, float]:
    """Non-intrusive DNSMOS P.835 (SIG, BAK, OVRL) and P.808 scores."""
    from speechmos import dnsmos as _dnsmos
    if rate != RATE:
        raise ValueError(f"DNSMOS needs {RATE} Hz audio, got {rate}")
    estimate = np.asarray(estimate, dtype=np.float64)
    peak = np.abs(estimate).max()
    if peak > 1.0:  # speechmos rejects samples outside [-1, 1]
        estimate = estimate / peak
    scores = _dnsmos.run(estimate, rate)
    return {"dnsmos_sig": float(scores["sig_mos"]), "dnsmos_bak": float(scores["bak_mos"]),
            "dnsmos_ovrl": float(scores["ovrl_mos"]), "dnsmos_p808": float(scores["p808_mos"])}


@cache
def _visqol_api():
    from visqol.api import VisqolApi
    api = VisqolApi()
    with contextlib.redirect_stdout(io.StringIO()):
        api.create(mode="speech")
    return api


def visqol(reference: np.ndarray, estimate: np.ndarray, rate: int = RATE) -> float:
    """ViSQOL v3 speech mode MOS-LQO (16 kHz)."""
    reference, estimate = _pair(reference, estimate)
    return float(_visqol_api().measure_from_arrays(reference.astype(np.float64), estimate.astype(np.float64),
                                                   rate).moslqo)


def pit_order(references: np.ndarray, estimates: np.ndarray) -> tuple[int, ...]:
    """Permutation-invariant pairing: ``order[i]`` is the estimate that goes with ``references[i]``, the
    pairing with the best mean SI-SDR (every permutation: separation has two or three sources)."""
    import itertools
    orders = itertools.permutations(range(len(estimates)), len(references))
    return max(orders, key=lambda o: sum(si_sdr(r, estimates[i]) for r, i in zip(references, o, strict=True)))


def _pair(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reference = np.asarray(reference, dtype=np.float64).reshape(-1)
    estimate = np.asarray(estimate, dtype=np.float64).reshape(-1)
    if reference.shape != estimate.shape:
        raise ValueError(f"reference and estimate differ in length: {reference.shape[0]} vs {estimate.shape[0]}")
    if reference.size == 0:
        raise ValueError("empty signals")
    return reference, estimate


def available_metrics() -> dict[str, str | None]:
    """metric -> None when it can run, else a note saying what to install."""
    out = {}
    for name, (modules, pip_name) in REQUIREMENTS.items():
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        out[name] = f"skipped: `pip install {pip_name}` (missing {', '.join(missing)})" if missing else None
    return out


def score(reference: np.ndarray | None, estimate: np.ndarray, metrics: list[str]) -> dict[str, float]:
    """All requested metrics of one clip at 16 kHz (intrusive ones only when a reference is given)."""
    functions: dict[str, Callable] = {"si_sdr": si_sdr, "sdr": sdr, "pesq": pesq_wb, "stoi": stoi, "visqol": visqol}
    out: dict[str, float] = {}
    for name in metrics:
        if name == "dnsmos":
            out.update(dnsmos(estimate))
        elif reference is not None:
            out[name] = functions[name](reference, estimate)
    return out
