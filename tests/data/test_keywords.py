"""Keyword data: the corpora listers, KeywordClips (labels, spans, reproducibility, held-out corpora) and the
keyword dev sets, on tiny generated data."""

import numpy as np
import pytest
import torch

from tests.data.tiny import prepare_tiny
from tests.data.tiny_keywords import OTHER, add_tiny_keywords
from wavestream.data import devset
from wavestream.data.corpora import CORPORA, KEYWORDS, OTHER_WORDS, _tuxpaint_locale
from wavestream.data.devset import load_devset, write_devset
from wavestream.data.keywords import DEV_ONLY_CORPORA, SILENCE, UNKNOWN, KeywordClips, sounds_like_keyword


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return add_tiny_keywords(prepare_tiny(tmp_path_factory.mktemp("kwdata")))


def test_other_words_are_not_keywords():
    assert not set(OTHER_WORDS) & set(KEYWORDS)
    assert len(set(OTHER_WORDS)) == len(OTHER_WORDS)


def test_keyword_corpora_list_every_keyword_with_a_text():
    clips = list(CORPORA["keywords"].lister())
    texts = {c.text for c in clips}
    assert set(KEYWORDS) <= texts and texts - set(KEYWORDS) <= set(OTHER_WORDS)
    assert all(c.kind == "keywords" and c.tts for c in clips)
    assert len({c.name for c in clips}) == len(clips)  # one file per clip
    for name in ("keywords-festival", "keywords-mbrola"):
        listed = list(CORPORA[name].lister())
        assert {c.text for c in listed} >= set(KEYWORDS) and all(c.tts[0] in ("sh", "espeak-ng") for c in listed)


def test_tuxpaint_names_map_to_locales():
    assert _tuxpaint_locale("math", "7") == "en_US"
    assert _tuxpaint_locale("math", "7_en_GB") == "en_GB"
    assert _tuxpaint_locale("animals", "cat_desc") == "en_US"
    assert _tuxpaint_locale("animals", "cat_desc_fr") == "fr"
    assert _tuxpaint_locale("animals", "cat_zh_tw") == "zh_tw"
    assert _tuxpaint_locale("animals", "cat") is None  # a sound effect


def test_sounds_like_keyword():
    assert sounds_like_keyword("Nooo", KEYWORDS) and sounds_like_keyword("Yessir", KEYWORDS)
    assert sounds_like_keyword("seven", KEYWORDS)
    assert not sounds_like_keyword("seventeen", KEYWORDS) and not sounds_like_keyword("hello", KEYWORDS)


def test_clips_hold_their_word_where_they_say(root):
    data = KeywordClips(root, "train", seconds=1.0, length=60, reverb_prob=0.5, speed_prob=0.5)
    trained = {e["corpus"] for es in data.by_word.values() for e in es} | {e["corpus"] for e in data.other_words}
    assert "tiny-tts" in trained and not trained & set(DEV_ONLY_CORPORA)  # the dev talkers' words, none of them
    assert data.labels[-2:] == (UNKNOWN, SILENCE)
    seen = set()
    for i in range(60):
        audio, label, span = data[i]
        assert audio.shape == (1, 16000) and audio.dtype == torch.float32 and float(audio.abs().max()) < 1
        start, end = span.tolist()
        if data.labels[label] == SILENCE:
            assert (start, end) == (-1, -1)
        else:
            assert 0 <= start < end <= 16000
        seen.add(data.labels[label])
    assert {UNKNOWN, SILENCE} <= seen and len(seen) > 10
    a, b = data[7], data[7]
    assert np.array_equal(a[0].numpy(), b[0].numpy()) and a[1] == b[1]  # reproducible per index


def test_forced_label_word_and_tail(root):
    data = KeywordClips(root, "dev", seconds=1.0, reverb_prob=0.0, speed_prob=0.0, snr_db=(50.0, 50.0), quiet_prob=0.0,
                        context_prob=0.0, bandlimit_prob=0.0)
    word = np.ones(3200, np.float32) * 0.1
    for seed in range(5):
        audio, label, info = data.synthesize(np.random.default_rng(seed), 32000, label=3, word=(word, {"text": "x"}),
                                             tail_s=0.5)
        assert label == 3 and info["end"] - info["start"] == 3200 and info["end"] <= 32000 - 8000
        inside = np.abs(audio[info["start"]:info["end"]]).mean()
        assert inside > 20 * np.abs(audio[: info["start"]]).mean() if info["start"] > 160 else True


def test_keyword_dev_sets(root, monkeypatch):
    monkeypatch.setattr(devset, "KEYWORD_CLIPS", 44)
    monkeypatch.setattr(devset, "NEGATIVE_SPEECH", 2)
    monkeypatch.setattr(devset, "NEGATIVE_BACKGROUND", 1)
    monkeypatch.setattr(devset, "NEGATIVE_SECONDS", 8.0)
    write_devset("keywords", root)
    _, synthetic = load_devset("keywords", root)
    assert len(synthetic) == 44 and {e["label"] for e in synthetic} >= set(KEYWORDS)
    assert all(e["end"] <= (devset.KEYWORD_SECONDS - devset.KEYWORD_TAIL_S) * 16000 for e in synthetic if "end" in e)
    write_devset("keywords-real", root)
    _, real = load_devset("keywords-real", root)
    recorded = [e for e in real if e["label"] in KEYWORDS]
    assert {e["corpus"] for e in recorded} == {"tuxpaint-en", "saytime", "spokennumbers"}
    assert len(recorded) == 40 * len(devset.REAL_CONDITIONS)  # 4 talkers x 10 digits in every condition
    assert {e["condition"] for e in real} == {c[0] for c in devset.REAL_CONDITIONS} | {"unknown", "silence"}
    assert all(e["text"] not in KEYWORDS for e in real if e["condition"] == "unknown")
    write_devset("keywords-negative", root)
    _, negative = load_devset("keywords-negative", root)
    assert [e["kind"] for e in negative] == ["speech", "speech", "noise"]
    assert all(e["duration"] == 8.0 for e in negative)
    assert not set(OTHER) & set(KEYWORDS)


def test_source_weights_pick_the_source_first(root):
    data = KeywordClips(root, "train", seconds=1.0, source_weights={"tinyvoice0": 1.0, "tinyvoice1": 0.0})
    # tiny voices are named tinyvoice<k> (no "-"): the whole name is the source; weight 0 drops a source
    for i in range(20):
        _, label, info = data.synthesize(np.random.default_rng(i), label=i % 20)
        assert info["speaker"] == "tinyvoice0"


def test_real_corpora_train_on_a_dev_talker_from_both_splits(root):
    # the leave-one-source-out runs: saytime (listed in train) and both Tux Paint talkers (listed in either split)
    data = KeywordClips(root, "train", seconds=1.0, real_corpora=["tuxpaint-en", "saytime"],
                        source_weights={"tinyvoice0": 1.0, "real": 1.0, "saytime": 1.0})
    speakers = {data.synthesize(np.random.default_rng(i), label=i % 10)[2]["speaker"] for i in range(60)}
    assert speakers == {"tinyvoice0", "real-us", "real-gb", "saytime-tiny"}
    assert {"circle", "square", "o'clock"} <= {e["text"] for e in data.other_words}
    with pytest.raises(ValueError, match="real_corpora"):
        KeywordClips(root, "train", seconds=1.0, real_corpora=["tiny-tts"])
    # by default the dev talkers stay out of training altogether
    assert not {e["corpus"] for e in KeywordClips(root, "train", seconds=1.0).other_words} & set(DEV_ONLY_CORPORA)


def test_voiced_span_skips_room_tone():
    from wavestream.data.keywords import voiced_span
    rng = np.random.default_rng(0)
    x = rng.standard_normal(16000).astype(np.float32) * 1e-3  # room tone
    x[4000:9000] += np.sin(np.arange(5000) * 0.3).astype(np.float32) * 0.3  # the word
    first, end = voiced_span(x, 16000)
    assert 3840 <= first <= 4000 and 9000 <= end <= 9160
    assert voiced_span(np.zeros(800, np.float32), 16000) == (0, 800)


def test_running_speech_mentions_no_keyword(root):
    from wavestream.data.keywords import mentions_keyword
    assert mentions_keyword("Room 512 is on the left.", KEYWORDS) and mentions_keyword("Seven-Up", KEYWORDS)
    assert not mentions_keyword("The old fisherman painted a heavy wooden box.", KEYWORDS)
    data = KeywordClips(root, "train", seconds=1.0)
    assert data.running and not any(mentions_keyword(e.get("text", ""), KEYWORDS) for e in data.running)


def test_unknown_tts_share_draws_unknowns_from_tts_or_recordings(root, monkeypatch):
    from wavestream.data import quality
    # two of the tiny train voices count as TTS, the others as recordings
    train_voices = sorted({e["speaker"] for e in KeywordClips(root, "train", seconds=1.0).other_words})
    tts = set(train_voices[:2])
    monkeypatch.setattr(quality, "TTS_VOICES", frozenset(tts))
    unknown = len(KEYWORDS)
    for share, expected in ((1.0, True), (0.0, False)):
        data = KeywordClips(root, "train", seconds=1.0, running_speech_prob=0.0, context_prob=0.0,
                            unknown_tts_share=share)
        speakers = [data.synthesize(np.random.default_rng(seed), label=unknown)[2]["speaker"] for seed in range(30)]
        assert all((s in tts) == expected for s in speakers)
    data = KeywordClips(root, "train", seconds=1.0, running_speech_prob=0.0, unknown_tts_share=0.5)
    speakers = [data.synthesize(np.random.default_rng(seed), label=unknown)[2]["speaker"] for seed in range(60)]
    assert 10 < sum(s in tts for s in speakers) < 50
    # the tiny running speech is all recorded: asking for TTS stretches of it is refused, by name
    with pytest.raises(ValueError, match="TTS running speech"):
        KeywordClips(root, "train", seconds=1.0, running_speech_prob=0.3, unknown_tts_share=0.5)
    KeywordClips(root, "train", seconds=1.0, running_speech_prob=0.3, unknown_tts_share=0.0)
    with pytest.raises(ValueError, match="probability"):
        KeywordClips(root, "train", seconds=1.0, unknown_tts_share=1.5)


def test_digital_silence_leaves_exact_zeros_around_the_word(root):
    data = KeywordClips(root, "train", seconds=1.0, reverb_prob=0.0, context_prob=0.0, bandlimit_prob=0.0,
                        digital_silence_prob=1.0)
    silence = data.labels.index(SILENCE)
    for seed in range(6):
        audio, label, info = data.synthesize(np.random.default_rng(seed), label=3 if seed % 2 else silence)
        assert info["background"] == "none" and np.isfinite(audio).all()
        if label == silence:
            assert not audio.any()
        else:
            start, end = info["placed"]
            assert not audio[:start].any() and not audio[end:].any() and np.abs(audio[start:end]).max() > 0
    with pytest.raises(ValueError, match="probability"):
        KeywordClips(root, "train", seconds=1.0, digital_silence_prob=-0.1)


def test_foils_are_keyword_takes_reversed_or_cut_short(root):
    data = KeywordClips(root, "train", seconds=1.0, running_speech_prob=0.0, context_prob=0.0, foil_prob=1.0)
    unknown = data.labels.index(UNKNOWN)
    takes = {e["path"]: e for es in data.by_word.values() for e in es}
    kinds = set()
    for seed in range(30):
        x, info = data._word(np.random.default_rng(seed), unknown)
        kind, _, word = info["text"].removeprefix("(foil: ").removesuffix(")").partition(" of ")
        assert word in data.keywords
        take = next(data.read(e) for e in takes.values() if e["speaker"] == info["speaker"] and e["text"] == word)
        if kind == "reversed":
            assert np.array_equal(x, take[::-1])
        else:  # a head or a tail: part of the take, at most 55 % of its voiced span plus the silence kept
            assert kind in ("head", "tail") and 0 < len(x) < len(take)
            assert np.array_equal(x, take[:len(x)] if kind == "head" else take[len(take) - len(x):])
        kinds.add(kind)
    assert kinds == {"reversed", "head", "tail"}
    # the foil is an unknown word: its clip is labelled unknown like any other
    assert data.synthesize(np.random.default_rng(0), label=unknown)[1] == unknown
    # off by default, and then no random number is drawn: older configs give the same clips
    plain, off = KeywordClips(root, "train", seconds=1.0), KeywordClips(root, "train", seconds=1.0, foil_prob=0.0)
    assert np.array_equal(plain.synthesize(np.random.default_rng(3))[0], off.synthesize(np.random.default_rng(3))[0])
    with pytest.raises(ValueError, match="probability"):
        KeywordClips(root, "train", seconds=1.0, foil_prob=2.0)


def test_the_real_set_is_not_frozen_without_one_of_its_corpora(tmp_path, capsys):
    """Without one recorded dev corpus (e.g. spokennumbers, a pip package) ``keywords-real`` would be another set
    under the same name: the command names what is missing, writes the other sets and exits with status 1."""
    from wavestream.cli import main
    from wavestream.data.manifest import manifest_path, read_manifest, write_manifest
    root = add_tiny_keywords(prepare_tiny(tmp_path))
    for split in ("train", "dev"):
        path = manifest_path(root, "keywords", split)
        write_manifest(path, [e for e in read_manifest(path) if e["corpus"] != "spokennumbers"])
    with pytest.raises(ValueError, match="no clips of spokennumbers"):
        write_devset("keywords-real", root)
    assert main(["data", "devset", "--root", str(root), "--task", "keywords-real,keywords"]) == 1
    out = capsys.readouterr().out
    assert "keywords-real not written" in out and "data prepare --only spokennumbers" in out
    assert not (root / "devsets" / "keywords-real" / "checksum.txt").exists()
    assert load_devset("keywords", root)[1]  # the other set was written
