"""The LIF time loop and its one-frame step compiled by numba (the optional ``fast`` extra: ``pip install
"wavestream[fast]"``).

Imported only by ``spiking.compiled_lif``, so a process that never runs a spiking model never loads numba.
The arithmetic is ``lif_forward``'s, value for value: the decay is one float32 multiply and the input one
float32 add (numba compiles without fast-math, so LLVM fuses no multiply-add), and the soft reset subtracts
the threshold exactly. ``cache=True`` keeps the compiled code between processes.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _update(v, current, decay, threshold):  # pragma: no cover - compiled; tested through spiking
    """One neuron, one time step -> (fired, the new membrane): the arithmetic both loops share."""
    membrane = v * decay
    membrane = membrane + current  # a second rounding: no fused multiply-add
    spiked = membrane >= threshold
    return spiked, membrane - threshold if spiked else membrane


@numba.njit(cache=True)
def lif_rows(currents, v, decay, threshold, fired):  # pragma: no cover - compiled; tested through spiking
    """Currents ``[T, N]`` float32, membranes ``[N]`` float32 (updated in place), their decays ``[N]``
    float32 and a float32 ``threshold`` -> ``fired`` ``[T, N]`` bool."""
    for t in range(currents.shape[0]):
        for i in range(currents.shape[1]):
            fired[t, i], v[i] = _update(v[i], currents[t, i], decay[i], threshold)


@numba.njit(cache=True)
def lif_frame(currents, v, decay, threshold):  # pragma: no cover - compiled; tested through spiking
    """One time step: currents and membranes ``[B, C]`` float32 (``v`` is left as it is), the decays ``[C]``
    float32 -> the spikes (0 or 1) and the new membranes, new ``[B, C]`` float32 arrays. On a streaming step's
    few hundred values the wrapping costs more than the loop, so this is one call with nothing else to convert."""
    spikes, membranes = np.empty_like(currents), np.empty_like(currents)
    for b in range(currents.shape[0]):
        for i in range(currents.shape[1]):
            spiked, membranes[b, i] = _update(v[b, i], currents[b, i], decay[i], threshold)
            spikes[b, i] = 1.0 if spiked else 0.0
    return spikes, membranes
