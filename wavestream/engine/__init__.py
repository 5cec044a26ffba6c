"""wavestream.engine: sessions and the cross-stream batching scheduler (no HTTP in here).

The API the service uses::

    engine = Engine(max_batch=32, max_wait=None, workers=os.cpu_count(), max_sessions=64,
                    queue_chunks=8, max_chunk_hops=32, on_batch=None)
    await engine.start()
    engine.load("enhance")                     # optional preload (also validates params)
    engine.pipeline("enhance", 48000, 1, {})   # what a session computes, stepped directly
    session = engine.open_session("enhance", sample_rate=48000, channels=1, params={})
        # ValueError: unknown model, bad rate/channels/params; CapacityError: max_sessions reached
    session.info        # {"session": id, "model": {...describe(), "params"}, "latency_ms", "output": {...},
                        #  "input": {...} for a token-input (decode) model}
    out = await session.process(samples)       # float32 [n, channels] -> Output of the whole hops ready
    out = await session.finish()               # end of input: the tail (then reset() to reuse)
    session.reset()                            # new stream, same session (not while a call runs)
    session.close()                            # idempotent; engine.active_sessions drops
    engine.active_sessions, engine.stats()     # stats: batch sizes, RTF, chunk latencies per model
    await engine.aclose()

- ``Output`` (pipeline.py) documents every output kind: audio/sources as ``float32 [n, channels]``
  at the client rate, time-aligned with the input (``finish`` makes the total length equal the
  input's); tokens/events as model frames plus, for events, the model's detections.
- Errors from ``process``/``finish``: ValueError for bad samples (session still usable);
  ``StepError`` when the model step failed on this stream (other streams are unaffected; the
  session stays failed until ``reset``); RuntimeError on a closed session.
- Per-session mode (no cross-stream batching, for benchmarks and debugging): ``max_batch=1``.
  Each step then carries one stream; up to ``workers`` steps run in parallel.
- ``on_batch(model, streams, compute_seconds, audio_seconds_per_stream)`` is called after every
  step (it matches ``ServiceMetrics.observe_batch``).
- Params: a model accepts only the keys named in its ``stream_params`` class attribute (none by
  default). Per-stream params (its ``state_params`` and ``detector_params``, e.g. a codec's
  bitrate, a keyword threshold) are set in each stream's state or detector, so streams that
  differ in them share one model instance, scheduler and batch; the others are construction
  params (config overrides for ``load_model``, e.g. a codec's mode): each distinct set, up to
  ``max_instances`` per model, gets its own instance, scheduler and metrics label.
- ``Engine(weights={"encodec_24khz": path})`` serves a weights file instead of the shipped one.
- Multi-channel: each client channel is its own batch row unless the model declares
  ``audio_channels > 1`` (one row of that many channels) or ``mixdown = True`` (the channels are
  averaged to one mono row, e.g. ``separate``). ``model.latency`` is read as the output delay in samples.

``StreamPipeline`` is the same path for one stream without the engine (``wavestream process``).
"""

from .engine import CapacityError, Engine, Session, load_stream_model
from .pipeline import Output, StreamPipeline
from .scheduler import StepError

__all__ = ["CapacityError", "Engine", "Output", "Session", "StepError", "StreamPipeline", "load_stream_model"]
