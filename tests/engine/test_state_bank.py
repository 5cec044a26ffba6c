"""The scheduler keeps stream states as rows of shared tensors (``StateBank``): streams that join
(the tensors grow), leave (their rows are reused) or reset while other streams are being stepped
must each still get exactly their own offline output."""

import asyncio
import random

import numpy as np

from tests.engine.models import StateGainModel
from wavestream.engine import Engine, Output, StreamPipeline


def noise(n, channels, seed):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (n, channels)).astype(np.float32)


def offline(x, gain):
    pipe = StreamPipeline(StateGainModel(), 16000, x.shape[1], params={"gain": gain})
    return Output.concat([pipe.process(x), pipe.finish()]).audio


async def run(session, x, rng):
    outs, pos = [], 0
    while pos < len(x):
        n = rng.choice([80, 160, 480, 1000])
        outs.append(await session.process(x[pos:pos + n]))
        pos += n
        await asyncio.sleep(0)
    outs.append(await session.finish())
    return Output.concat(outs).audio


def test_streams_joining_leaving_and_resetting_while_others_step():
    rng = random.Random(0)
    jobs = []  # (input, gain, output)

    async def stream(engine, i, channels):
        gain = 0.5 + 0.05 * i  # a per-stream state param: part of the state in the bank
        session = engine.open_session("test-state-gain", 16000, channels, {"gain": gain})
        x = noise(rng.randint(1600, 4000), channels, i)
        if i % 5 == 0:  # part of one signal, then a reset: the next signal starts from a fresh state
            await session.process(x[:700])
            session.reset()
        jobs.append((x, gain, await run(session, x, rng)))
        session.close()  # its rows go back to the bank for the streams that open later

    async def main():
        engine = Engine(max_batch=4, workers=2, max_wait=0.0005)
        await engine.start()
        running = []
        for i in range(60):  # streams keep opening while earlier ones step: the bank grows under them
            running.append(asyncio.create_task(stream(engine, i, 1 + i % 3)))
            await asyncio.sleep(0.002)
        await asyncio.gather(*running)
        stats = engine.stats()
        await engine.aclose()
        return stats

    stats = asyncio.run(main())
    assert stats["mean_batch"] > 1
    assert len(jobs) == 60
    for x, gain, out in jobs:
        ref = offline(x, gain)
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() <= 1e-5
