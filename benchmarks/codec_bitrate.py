"""A codec's bitrate counted on the wire and in token files, beside the nominal one, and its encode and
decode speed on one thread, at each bitrate it offers.

For each bitrate the audio goes through the encode pipeline in ``--message-ms`` messages, as a server
session takes a client's messages, and the token messages the server would send back are counted: the
payload (uint16 codes) and the payload with its WebSocket frame header (2 bytes up to 125 payload bytes,
4 up to 65535; TCP/IP not counted). The same codes are written as a .wsc token file and its size counted
(codes alone, and with the header). All are bits per second of audio. RTF = thread CPU time / audio
duration, encoding (audio -> codes) and decoding (codes -> audio at the input's rate) separately; the
machine's load average is printed beside it. Nothing is asserted.

    python benchmarks/codec_bitrate.py [--model codec] [--input FILE] [--seconds 10] [--message-ms 20]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import soundfile as sf
import torch

from wavestream.engine import Output, StreamPipeline, load_stream_model
from wavestream.engine.codec_files import header_for
from wavestream.evaluate.harness import machine_load
from wavestream.streaming.tokens import encode_tokens, write_token_file


def speech_like(seconds: float, rate: int) -> np.ndarray:
    """A harmonic tone with a gliding pitch and syllable-rate bursts, plus a little noise."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 0.5 * t)) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12)) * np.clip(np.sin(2 * np.pi * 4 * t), 0, None)
    noise = np.random.default_rng(0).normal(0, 0.005, len(t))
    return (0.1 * voiced + noise).astype(np.float32)[:, None]


def ws_frame_bytes(payload: int) -> int:
    """A server's (unmasked) WebSocket binary frame carrying ``payload`` bytes."""
    return payload + (2 if payload <= 125 else 4 if payload <= 65535 else 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="codec", help="codec model (its shipped weights, else random ones)")
    parser.add_argument("--input", help="mono or multi-channel audio file (default: a speech-like test signal)")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio used (cut or the test signal's length)")
    parser.add_argument("--message-ms", type=float, default=20.0, help="audio per client message")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.input:
        x, rate = sf.read(args.input, dtype="float32", always_2d=True)
        x = x[:int(args.seconds * rate)]
    else:
        rate = 16000
        x = speech_like(args.seconds, rate)
    seconds = len(x) / rate
    encoder = load_stream_model(args.model, {"mode": "encode"})
    decoder = load_stream_model(args.model, {"mode": "decode"})
    message = max(1, round(args.message_ms / 1000 * rate))
    print(f"{args.model}: trained={encoder.trained}, {seconds:.2f} s at {rate} Hz, {x.shape[1]} channel(s), "
          f"{args.message_ms:g} ms messages, 1 thread; {machine_load()}")
    print("\n| kbps nominal | codebooks | wire payload kbps | wire with WS headers kbps | file codes kbps | "
          "file with header kbps | RTF encode | RTF decode |\n|---|---|---|---|---|---|---|---|")
    for bitrate in encoder.bitrates:
        params = {"bitrate": bitrate}
        pipe = StreamPipeline(encoder, rate, x.shape[1], params=params)
        outputs, payload, framed = [], 0, 0
        cpu = time.thread_time()
        with torch.inference_mode():
            for pos in range(0, len(x), message):
                outputs.append(pipe.process(x[pos:pos + message]))
            outputs.append(pipe.finish())
        encode_s = time.thread_time() - cpu
        for out in outputs:
            if len(out.frames):
                size = len(encode_tokens(out.frames))
                payload, framed = payload + size, framed + ws_frame_bytes(size)
        codes = Output.concat(outputs).frames
        header = header_for(args.model, pipe.output_info(), rate, len(x), codes)
        buffer = io.BytesIO()
        write_token_file(buffer, header, codes)
        assert len(buffer.getvalue()) == header.file_bytes
        rates = header.bitrates()
        decoders = [StreamPipeline(decoder, rate, 1, params=params) for _ in range(x.shape[1])]
        cpu = time.thread_time()
        with torch.inference_mode():
            for c, dec in enumerate(decoders):
                for pos in range(0, len(codes), 50):  # 1 s of frames a call
                    dec.process(codes[pos:pos + 50, c])
                dec.finish()
        decode_s = time.thread_time() - cpu
        kbps = 8 / seconds / 1000
        print(f"| {rates['nominal']:g} | {header.n_q} | {payload * kbps:.3f} | {framed * kbps:.3f} | "
              f"{rates['payload']:.3f} | {rates['file']:.3f} | {encode_s / seconds:.4f} | {decode_s / seconds:.4f} |",
              flush=True)
    print(f"\nmachine: {machine_load()}")


if __name__ == "__main__":
    main()
