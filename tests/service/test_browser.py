"""The page at `/` in a real headless Chromium against a real server on a loopback port.

Chromium (Debian's `chromium`, installed by `make install-dev`) is driven by Playwright with a fake
microphone that plays a real speech recording; Playwright's own browser download is never used.
The page keeps its figures in `window.wavestream`, which these tests read. Select these tests with
`-k browser`; `WAVESTREAM_SCREENSHOTS=docs/images` renews the screenshots in the docs.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from tests.engine.mixtures import two_talkers
from tests.service.conftest import running_server
from wavestream.engine import Output
from wavestream.engine.codec_files import encode_file
from wavestream.models.kws import LMUFormerKWS
from wavestream.models.registry import get_spec
from wavestream.service.protocol import ERROR_CLOSE_CODES
from wavestream.streaming.tokens import read_token_file

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SPEECH = Path(__file__).parents[1] / "models" / "data" / "speech_16k.flac"  # real speech, see its README
STATIC = Path(__file__).parents[2] / "wavestream" / "service" / "static"
KEY = "browser-key"
# the kws model fires with a low detector threshold and no minimum event length (as in test_kws_events)
FIRING = {"threshold": "0.09", "smooth_frames": "3", "refractory_frames": "10", "min_frames": "1"}  # none the default
# Chromium's own network traffic off: only the test server is ever contacted
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def noisy_speech(seconds: float | None = None) -> tuple[np.ndarray, int]:
    """The real speech clip with white noise at about 10 dB SNR (something for `enhance` to remove)."""
    x, rate = sf.read(SPEECH, dtype="float32")
    x = x[: int(seconds * rate)] if seconds else x
    noise = np.random.default_rng(0).standard_normal(len(x)).astype(np.float32)
    return 0.8 * x + 0.3 * np.sqrt(np.mean(x**2)) * noise, rate


@pytest.fixture(scope="module")
def playwright_api():
    if not os.path.exists(CHROMIUM):
        if os.geteuid() == 0:
            pytest.fail("chromium is missing; `make install-dev` installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed and cannot be without root (apt-get install chromium)")
    from playwright.sync_api import sync_playwright  # the `test` extra

    with sync_playwright() as api:
        yield api


@pytest.fixture(scope="module")
def browser(playwright_api, tmp_path_factory):
    """Chromium whose microphone plays noisy real speech (looped), with a fresh profile."""
    root = tmp_path_factory.mktemp("chromium")
    x, rate = noisy_speech()
    sf.write(root / "microphone.wav", x, rate, subtype="PCM_16")
    context = playwright_api.chromium.launch_persistent_context(
        str(root / "profile"), executable_path=CHROMIUM, headless=True,
        args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={root / 'microphone.wav'}"],
        viewport={"width": 900, "height": 1000})
    yield context
    context.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory, test_models):
    """A server that needs an API key; untrained models allowed (kws has no trained weights yet)."""
    with running_server(tmp_path_factory.mktemp("data"), api_keys=[KEY], max_sessions=8,
                        allow_untrained=True) as running:
        yield running


@pytest.fixture
def page(browser, site):
    """A new tab; fails the test on any JavaScript error or any request to another host."""
    page = browser.new_page()
    errors, foreign = [], []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    own = re.escape(f"127.0.0.1:{site.settings.port}/")
    page.route(re.compile(rf"^(?!https?://{own}).*"), lambda route: (foreign.append(route.request.url), route.abort()))
    yield page
    page.close()
    assert not errors, f"JavaScript errors: {errors}"
    assert not foreign, f"the page asked other hosts: {foreign}"


def figures(page) -> dict:
    return page.evaluate("() => JSON.parse(JSON.stringify(window.wavestream))")


def wait_for(page, condition: str, timeout_s: float = 60):
    """Wait until the JS expression over `s` (the page's state) holds; no timing is asserted."""
    page.wait_for_function(f"() => {{ const s = window.wavestream; return {condition}; }}", timeout=timeout_s * 1000)


def open_page(page, site, key: str | None = KEY, model: str = "enhance"):
    page.goto(site.http + "/" + (f"?api_key={key}" if key else ""))
    if key == KEY:
        wait_for(page, "s.models.length > 0")
        page.select_option("#model", model)


def drop_file(page, selector: str, path: Path) -> None:
    """Drop ``path`` on the element as a user dragging it from a file manager would."""
    transfer = page.evaluate_handle("""([name, bytes]) => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array(bytes)], name, { type: "audio/wav" }));
        return transfer;
    }""", [path.name, list(path.read_bytes())])
    page.dispatch_event(selector, "dragover", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Where screenshots go: a temporary folder, or WAVESTREAM_SCREENSHOTS=docs/images to renew the docs' ones."""
    folder = os.environ.get("WAVESTREAM_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("screenshots")


def screenshot(page, images: Path, name: str) -> None:
    images.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(images / f"page-{name}.png"), full_page=True)
    assert (images / f"page-{name}.png").stat().st_size > 10_000


def test_browser_microphone_enhance_round_trip(page, site, images):
    open_page(page, site)
    page.click("#start")
    wait_for(page, "s.status === 'streaming'")
    # a second of processed audio back, the latency figures measured and the server's RTF read
    wait_for(page, "s.receivedFrames > s.ready.output.sample_rate && s.played > 0 "
                   "&& ['latency', 'delay', 'rtf'].every((id) => document.getElementById(id).textContent !== '–')")
    assert re.fullmatch(r"\d+ ms", page.text_content("#latency"))
    assert re.fullmatch(r"\d+ ms", page.text_content("#delay"))
    assert re.match(r"\d+\.\d{3} \(mean batch", page.text_content("#rtf"))
    state = figures(page)
    assert state["ready"]["model"]["name"] == "enhance" and state["tracks"] == ["Original", "Processed"]
    assert state["selected"] == 1 and page.get_attribute("#listen-1", "aria-pressed") == "true"
    # A/B while playing: the original is heard from now on, and playing goes on
    page.click("#listen-0")
    played = figures(page)["played"]
    wait_for(page, f"s.selected === 0 && s.played > {played}")
    assert page.get_attribute("#listen-0", "aria-pressed") == "true"
    screenshot(page, images, "enhance")
    page.click("#stop")
    wait_for(page, "s.status === 'done' && s.closeCode !== null")  # `done`, then the close frame
    state = figures(page)
    # after `end`, every input frame has its output frame; the noise is gone from the processed audio
    assert state["receivedFrames"] == state["sentFrames"] > 0
    original, processed = state["energy"]
    assert 0 < processed < 0.95 * original
    assert state["error"] is None and state["closeCode"] == 1000
    site.wait_idle()


def test_browser_dropped_file_two_sources(page, site, tmp_path, images):
    x, rate = noisy_speech(seconds=2.0)
    path = tmp_path / "speech.wav"
    sf.write(path, x, rate, subtype="PCM_16")
    open_page(page, site, model="test-sources")
    drop_file(page, "#drop", path)
    assert page.is_checked('input[name="source"][value="file"]') and "speech.wav" in page.text_content("#drop-name")
    page.click("#start")
    # the file plays to its end in real time, then the page sends `end` by itself
    wait_for(page, "s.status === 'done'")
    state = figures(page)
    assert state["tracks"] == ["Original", "Source 1", "Source 2"]
    assert state["ready"]["output"]["kind"] == "sources" and state["ready"]["output"]["channels"] == 2
    # the browser decodes the file at its own rate: at least all of it went out, and all of it came back
    browser_rate = state["ready"]["output"]["sample_rate"]
    assert state["sentFrames"] >= len(soxr.resample(x, rate, browser_rate))
    assert state["receivedFrames"] == state["sentFrames"]
    # test-sources: source 1 is the input (its delay undone, so aligned with the original), source 2 is -1/2 of it
    original, first, second = state["energy"]
    assert first == pytest.approx(original, rel=0.05) and second == pytest.approx(first / 4, rel=1e-4)
    page.click("#listen-2")
    assert figures(page)["selected"] == 2
    assert page.locator("#tracks canvas").count() == 3
    screenshot(page, images, "sources")
    site.wait_idle()


def test_browser_separate_gives_two_talker_tracks(page, site, tmp_path):
    """The mono page's stream of a two-talker file comes back as two tracks to see and hear."""
    mixture, _ = two_talkers(2.0, 16000, seed=8)
    path = tmp_path / "two-talkers.wav"
    sf.write(path, mixture, 16000, subtype="PCM_16")
    open_page(page, site, model="separate")
    drop_file(page, "#drop", path)
    page.click("#start")
    wait_for(page, "s.status === 'done'")
    state = figures(page)
    out = state["ready"]["output"]
    assert state["tracks"] == ["Original", "Source 1", "Source 2"]
    assert (out["kind"], out["channels"], out["sources"]) == ("sources", 2, 2)
    assert out["order"] == "source order is fixed for the whole stream"
    assert state["receivedFrames"] == state["sentFrames"] > 0 and state["error"] is None
    original, first, second = state["energy"]
    assert original > 0 and first > 0 and second > 0
    page.click("#listen-2")
    assert figures(page)["selected"] == 2 and page.locator("#tracks canvas").count() == 3
    site.wait_idle()


def test_browser_kws_events_appear_while_streaming(page, site, images):
    open_page(page, site, model="kws")
    default = LMUFormerKWS(**get_spec("kws").card().get("config", {})).detector_config["threshold"]
    assert float(page.input_value("#param-threshold")) == default  # the model's default, from GET /v1/models
    for name, value in FIRING.items():
        page.fill(f"#param-{name}", value)
    page.click("#start")
    # words are heard while the microphone still runs, not only at the end; the figures work for a
    # stream with params too (its server metrics are labelled kws{params})
    wait_for(page, "s.status === 'streaming' && s.events.length >= 2 "
                   "&& ['latency', 'rtf'].every((id) => document.getElementById(id).textContent !== '–')")
    assert figures(page)["status"] == "streaming"
    labels = page.locator("#events li b").all_text_contents()
    assert len(labels) >= 2 and all(re.fullmatch(r"[a-z]+", label) for label in labels)
    assert re.search(r"\d+\.\d\d–\d+\.\d\d s, score 0\.\d\d", page.text_content("#events li"))
    assert figures(page)["ready"]["model"]["params"] == {k: float(v) for k, v in FIRING.items()}
    screenshot(page, images, "kws")
    page.click("#stop")
    wait_for(page, "s.status === 'done'")
    site.wait_idle()


def test_browser_api_key_errors_are_explained(page, site, images):
    # no key: the model list is refused
    open_page(page, site, key=None)
    page.wait_for_selector("#error:not([hidden])")
    assert page.get_attribute("#error", "data-code") == "unauthorized"
    assert "needs an API key" in page.text_content("#error")
    # a key refused on the WebSocket after the list loaded (set without a change event, which would
    # reload the list first): the server's error, explained
    open_page(page, site)
    page.evaluate("document.getElementById('key').value = 'wrong-key'")
    page.click("#start")
    # the error message comes first, the close frame after it: wait for both
    wait_for(page, "s.status === 'error' && s.closeCode !== null")
    state = figures(page)
    assert state["error"]["code"] == "unauthorized" and state["closeCode"] == 1008
    assert state["error"]["detail"]  # the server's own words are shown beside ours
    assert "needs an API key" in page.text_content("#error")
    screenshot(page, images, "error")
    site.wait_idle()


def test_browser_bad_params_are_explained(page, site):
    open_page(page, site, model="kws")
    page.fill("#param-threshold", "5")
    page.click("#start")
    wait_for(page, "s.status === 'error' && s.closeCode !== null")  # the error message, then the close frame
    state = figures(page)
    assert state["error"]["code"] == "invalid_params" and state["closeCode"] == 1007
    assert "refused these parameters" in page.text_content("#error")
    site.wait_idle()


def test_browser_page_explains_every_error_code():
    """Every code the server can send has a message for people in the page (read from its source)."""
    source = (STATIC / "app.js").read_text()
    table = source[source.index("const ERRORS = {"):source.index("};", source.index("const ERRORS = {"))]
    explained = set(re.findall(r"^\s+(\w+): ", table, re.M))
    assert set(ERROR_CLOSE_CODES) <= explained, set(ERROR_CLOSE_CODES) - explained
    assert not re.search(r"https?://(?!localhost)\w", source + (STATIC / "index.html").read_text()), "no other hosts"


def test_browser_token_output_shows_its_bitrate(page, site):
    open_page(page, site, model="test-tokens")
    page.click("#start")
    wait_for(page, "s.receivedFrames >= 50 && document.getElementById('bitrate').textContent !== '–'")
    page.click("#stop")
    wait_for(page, "s.status === 'done'")
    state = figures(page)
    out = state["ready"]["output"]
    assert out["kind"] == "tokens" and out["dtype"] == "uint16"
    assert state["tokenBytes"] == 2 * state["receivedFrames"] * out["codebooks"]
    # one token frame per 10 ms hop of the audio sent (the last partial hop included)
    assert abs(state["receivedFrames"] - state["sentFrames"] / state["sampleRate"] * out["frame_rate"]) <= 1
    # the model names no codebook size: a code counts its 16 wire bits, so both figures agree
    shown = re.fullmatch(r"(\d+\.\d\d) kbit/s \(2 codebooks × 100 frames/s × 16 bits\); (\d+\.\d\d) kbit/s on the wire",
                         page.text_content("#bitrate"))
    assert shown and shown[1] == shown[2]
    site.wait_idle()


def test_browser_decodes_a_dropped_token_file(page, site, tmp_path, images):
    """A .wsc file from `wavestream encode` dropped on the page picks its model and decode mode; its
    tokens go out at their frame rate and the audio that comes back is what the server's decoder makes."""
    speech = tmp_path / "speech.wav"
    x, rate = sf.read(SPEECH, dtype="float32")
    sf.write(speech, x[: 2 * rate], rate, subtype="FLOAT")
    encode_file(speech, tmp_path / "speech.wsc", "codec", bitrate=1.5)
    header, codes = read_token_file(tmp_path / "speech.wsc")
    open_page(page, site)  # enhance is selected: the file switches to the model it names
    drop_file(page, "#drop", tmp_path / "speech.wsc")
    wait_for(page, "s.tokenFile !== null")
    assert page.input_value("#model") == "codec" and page.input_value("#param-mode") == "decode"
    assert float(page.input_value("#param-bitrate")) == 1.5
    assert "codec tokens, 2.0 s at 1.5 kbps (3 codebooks × 50 frames/s)" in page.text_content("#drop-name")
    page.click("#start")
    wait_for(page, "s.status === 'done' && s.closeCode !== null")  # `done`, then the close frame
    state = figures(page)
    ready = state["ready"]
    assert ready["model"]["params"] == {"mode": "decode", "bitrate": 1.5} and state["tracks"] == ["Decoded"]
    assert ready["input"]["codebooks"] == 3 and ready["output"]["kind"] == "audio"
    assert state["sentFrames"] == header.frames and state["tokenBytes"] == 2 * codes[:, 0].size
    pipeline = site.service.engine.pipeline("codec", state["sampleRate"], 1, {"mode": "decode", "bitrate": 1.5})
    expected = Output.concat([pipeline.process(codes[:, 0]), pipeline.finish()]).audio
    assert state["receivedFrames"] == len(expected) and state["played"] > 0
    energy = float(np.sum(expected.astype(np.float64) ** 2))
    assert energy > 0 and state["energy"][0] == pytest.approx(energy, rel=1e-4)
    assert re.fullmatch(r"1\.50 kbit/s \(3 codebooks × 50 frames/s × 10 bits\); 2\.40 kbit/s on the wire",
                        page.text_content("#bitrate"))
    assert "token frames decoded into" in page.text_content("#status")
    screenshot(page, images, "decode")
    assert state["error"] is None and state["closeCode"] == 1000
    site.wait_idle()


def test_browser_decode_mode_needs_a_token_file(page, site):
    open_page(page, site, model="codec")
    page.fill("#param-mode", "decode")
    page.click("#start")
    wait_for(page, "s.status === 'error'")
    assert figures(page)["error"]["code"] == "no_tokens" and "token file (.wsc)" in page.text_content("#error")
