"""Audio corpora -> manifests, on-the-fly mixture synthesis, frozen dev sets.

Usage
-----
Prepare the corpora once (Debian packages of real and synthetic speech, noise and music; missing
packages are apt-get installed when run as root). Everything lands under ``data/`` (or ``--root`` /
``$WAVESTREAM_DATA``) as 16 kHz mono FLAC plus JSONL manifests split train/dev by speaker::

    wavestream data prepare                       # all corpora, 16 kHz (~1 min, ~0.6 GB)
    wavestream data prepare --only speech,noise   # kinds or corpus names (fillets, espeak, lmms, ...)
    wavestream data prepare --only rooms          # room impulse responses (needs pyroomacoustics)
    wavestream data prepare --speech-dir my/speech --noise-dir my/noise   # your own folders too

Noisy speech for training an enhancement model, (noisy, clean) float32 ``[1, T]`` at 16 kHz,
reproducible per (seed, index)::

    from wavestream.data import NoisySpeech
    train = NoisySpeech(split="train", seconds=4.0, length=20000, snr_db=(-5, 20), reverb_prob=0.0)
    noisy, clean = train[0]
    loader = torch.utils.data.DataLoader(train, batch_size=16, shuffle=True, num_workers=1)

Also ``SpeakerMixtures`` (mixture [1, T], sources [2, T]; chosen overlap), ``MusicSpeech`` (speech
over music, sources = speech, music), ``CleanSpeech`` (clean speech alone [1, T], for codecs) and
``KeywordClips`` (``keywords.py``: audio [1, T], label, word span; needs ``--only keywords``). See
``synth.py`` for the choices (target under reverberation = direct path + early reflections,
band-limiting applies to input and target, clipping to the input only).
"""

from .keywords import KeywordClips
from .manifest import default_root, load_entries, read_manifest, split_of
from .synth import CleanSpeech, MusicSpeech, NoisySpeech, SpeakerMixtures

__all__ = ["CleanSpeech", "KeywordClips", "MusicSpeech", "NoisySpeech", "SpeakerMixtures", "default_root",
           "load_entries", "read_manifest", "split_of"]
