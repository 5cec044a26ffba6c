"""Evaluation: metrics, peers run side by side on the same frozen dev-set files, reports with plots.

    wavestream eval enhance --model enhance     # our model + noisy, rnnoise, dtln, deepfilternet
    wavestream eval codec --model codec         # + opus-6k, opus-12k, codec2-3200, codec2-1600
    wavestream eval separate --model separate   # + the unprocessed mixture and the oracle ratio mask

Reports (results.json, README.md, quality_vs_rtf.png, spectrograms.png) go to docs/results/TASK;
peers evaluated before on the same dev set are reused, so a new model costs only its own run.
"""
