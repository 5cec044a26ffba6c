// The wavestream page: a microphone or a file -> /v1/stream (protocol v1, docs/protocol.md) -> back,
// played and drawn beside the original; or a codec token file (.wsc) -> a codec's decode stream ->
// audio, played and drawn. Plain ES module, no build step, nothing from other hosts.
// Everything a test (or a curious user in the console) may read is in `window.wavestream`.
import { Spectrogram } from "./spectrogram.js";

const $ = (id) => document.getElementById(id);
const BLOCK_SECONDS = 0.02; // audio message size: 20 ms
const PREBUFFER_SECONDS = 0.08; // playback waits for this much audio, so network jitter does not crackle
const PING_MS = 1000; // round-trip marker interval
const METRICS_MS = 2000; // /metrics poll interval
const KEEP_EVENTS = 200;

// what each error code means for the person in front of the page (codes: docs/protocol.md)
const ERRORS = {
  unauthorized: "The server needs an API key: enter it in the API key field (or open this page with ?api_key=KEY).",
  at_capacity: "The server is at capacity (all stream slots are taken). Try again in a moment.",
  shutting_down: "The server is shutting down and takes no new streams. Try again shortly.",
  unknown_model: "The server does not have this model (any more). Reload the page to refresh the list.",
  invalid_params: "The model refused these parameters. Check the values under Model parameters.",
  invalid_message: "The server refused the start message (for example an unsupported sample rate).",
  invalid_json: "The server could not read a message of this page (not JSON).",
  invalid_audio: "The server refused the audio (a partial frame, or NaN/Inf samples).",
  invalid_tokens: "The server refused codec tokens (partial frames, or codes past the codebook).",
  unsupported_encoding: "The server does not support the audio encoding this page sent.",
  unsupported_message: "The server does not know a message this page sent (a newer page on an older server?).",
  not_started: "Audio was sent before the stream had started.",
  already_started: "This connection already had a stream.",
  message_too_big: "An audio message was larger than the server allows (max_message_bytes).",
  idle_timeout: "The server closed the stream because nothing arrived for too long.",
  send_timeout: "The server dropped the stream because this page stopped reading its output.",
  internal_error: "The model failed on this stream (a server-side error). Other streams are not affected.",
  // raised by the page itself
  insecure: "The microphone and AudioWorklet need a secure page: open it over https:// or on http://localhost.",
  microphone: "No microphone: the browser refused access or has none.",
  no_file: "Choose or drop an audio file first, or pick Microphone.",
  decode: "The browser cannot decode this file as audio.",
  token_file: "The page cannot decode this token file (.wsc) with the chosen model.",
  no_tokens: "Decode mode takes a codec token file (.wsc): drop one (from `wavestream encode` or POST /v1/encode).",
  bad_param: "A model parameter is not a valid value.",
  network: "The server cannot be reached.",
  http: "The server answered with an error.",
  closed: "The connection closed unexpectedly.",
};
// closes that come without an error message (proxies, crashes, restarts)
const CLOSES = {
  1001: "The server is going away (restarting or shutting down). Start again to reconnect.",
  1006: "The connection was lost (server stopped, network down, or a proxy without WebSocket support).",
  1009: "A message was too big for the server or a proxy on the way.",
  1011: "The server hit an internal error.",
  1012: "The server is restarting. Start again in a moment.",
  1013: "The server is overloaded. Try again later.",
};

const state = {
  status: "idle", // idle | connecting | streaming | finishing | done | error
  models: [],
  ready: null, // the server's ready message
  sampleRate: null, // the browser's audio rate: what is sent and played
  tracks: [], // names of what can be heard: "Original", then each output
  selected: 0,
  sentFrames: 0,
  receivedFrames: 0, // output frames (audio kinds) or token frames
  energy: [], // sum of squares of each track so far (original, outputs), aligned frame by frame
  outputMessages: 0,
  tokenBytes: 0, // token bytes on the wire: received (encode) or sent (decode)
  tokenFile: null, // the dropped token file's header (decode mode), without its codes
  events: [],
  roundTripMs: null,
  audioDelayMs: null,
  rtf: null,
  meanBatch: null,
  played: 0,
  underruns: 0,
  done: null,
  error: null, // {code, message, detail}
  closeCode: null,
};
window.wavestream = state;

let ctx = null, ws = null, input = null, mic = null, capture = null, player = null, gain = null;
let file = null, tokens = null, spectrograms = [], history = null, pings = new Map(), timers = [], endSent = false;
let rtfBase = null, delays = [], trips = [];

// -- small helpers ---------------------------------------------------------------------------------
function apiKey() {
  return $("key").value.trim();
}

function authHeaders() {
  return apiKey() ? { Authorization: `Bearer ${apiKey()}` } : {};
}

function setStatus(status, text) {
  state.status = status;
  $("status").textContent = text;
  $("status").dataset.status = status;
  const busy = ["connecting", "streaming", "finishing"].includes(status);
  $("start").disabled = busy;
  $("stop").disabled = !busy && !(ctx && ctx.state === "running");
  for (const el of document.querySelectorAll("#setup select, #setup input")) el.disabled = busy;
}

// closeSocket false: the server sent the error and closes the socket itself, with its close code
function fail(code, detail = "", closeSocket = true) {
  state.error = { code, message: ERRORS[code] || CLOSES[code] || "Unexpected error.", detail };
  $("error").hidden = false;
  $("error").dataset.code = code;
  $("error").innerHTML = "<strong></strong><small></small>";
  $("error").querySelector("strong").textContent = state.error.message;
  $("error").querySelector("small").textContent = `${detail ? `${detail} · ` : ""}code ${code}`;
  teardownInput();
  clearTimers();
  if (closeSocket && ws && ws.readyState <= WebSocket.OPEN) ws.close();
  setStatus("error", "Stopped by an error.");
}

function clearError() {
  state.error = null;
  $("error").hidden = true;
  $("error").textContent = "";
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : null;
}

function ms(value) {
  return value === null ? "–" : `${Math.round(value)} ms`;
}

function seconds(frames, rate) {
  return `${(frames / rate).toFixed(1)} s`;
}

// -- models and their parameters -------------------------------------------------------------------
async function loadModels() {
  let r;
  try {
    r = await fetch("/v1/models", { headers: authHeaders() });
  } catch (e) {
    return fail("network", String(e));
  }
  if (r.status === 401) return fail("unauthorized", "GET /v1/models: 401");
  if (!r.ok) return fail("http", `GET /v1/models: ${r.status}`);
  clearError();
  const previous = $("model").value;
  state.models = (await r.json()).models;
  $("model").innerHTML = "";
  for (const m of state.models) {
    $("model").add(new Option(`${m.name} — ${m.task}, ${m.output}, ${m.latency_ms} ms`, m.name));
  }
  const names = state.models.map((m) => m.name);
  $("model").value = names.includes(previous) ? previous : names.includes("enhance") ? "enhance" : names[0];
  showModel();
  setStatus("idle", "Pick a model and an input, then Start.");
}

function currentModel() {
  return state.models.find((m) => m.name === $("model").value);
}

function showModel() {
  const m = currentModel();
  if (!m) return;
  const metrics = Object.entries(m.metrics || {}).map(([k, v]) => `${k} ${v}`).join(", ");
  $("model-info").textContent = `${(m.description || m.task).replace(/\.*$/, "")}. Input ${m.input}, output ${m.output}, `
    + `${m.sample_rate / 1000} kHz, latency ${m.latency_ms} ms, ${(m.parameters / 1e6).toFixed(2)} M parameters`
    + (m.trained ? "" : ", untrained (random weights)") + (metrics ? `. Card: ${metrics}` : "");
  const fields = $("param-fields");
  fields.innerHTML = "";
  for (const [name, value] of Object.entries(m.stream_params || {})) {
    const label = document.createElement("label");
    const field = document.createElement("input");
    field.name = name;
    field.id = `param-${name}`;
    field.dataset.default = JSON.stringify(value);
    if (typeof value === "boolean") {
      field.type = "checkbox";
      field.checked = value;
    } else if (typeof value === "number") {
      field.type = "number";
      field.step = "any";
      field.value = String(value);
    } else {
      field.type = "text";
      field.value = value ?? "";
    }
    label.append(`${name} `, field);
    fields.append(label);
  }
  $("params").hidden = !fields.children.length;
}

// the params that differ from the model's defaults, typed like the defaults
function collectParams() {
  const params = {};
  for (const field of $("param-fields").querySelectorAll("input")) {
    const initial = JSON.parse(field.dataset.default);
    let value;
    if (field.type === "checkbox") value = field.checked;
    else if (field.type === "number") {
      if (field.value.trim() === "" || !Number.isFinite(Number(field.value))) throw new Error(`${field.name}: not a number`);
      value = Number(field.value);
    } else value = field.value;
    if (value !== initial) params[field.name] = value;
  }
  return params;
}

// -- codec token files (.wsc: docs/protocol.md, "token files") -------------------------------------
// header (little-endian), then codes of ceil(log2(codebook size)) bits each, most significant bit first,
// frame by frame (channel 0's codebooks, then channel 1's ...). Returns the header and channel 0's
// codes [frames * codebooks] (a decode stream is one row); throws an Error that says what is wrong.
function readTokenFile(buffer) {
  const bytes = new Uint8Array(buffer), view = new DataView(buffer);
  if (bytes.length < 45 || String.fromCharCode(...bytes.subarray(0, 4)) !== "WSCF") {
    throw new Error("not a wavestream token file (it does not start with WSCF)");
  }
  const version = view.getUint16(4, true), headerBytes = view.getUint16(6, true), nameBytes = view.getUint8(44);
  if (version !== 1) throw new Error(`token file format version ${version}; this page reads version 1`);
  if (headerBytes !== 45 + nameBytes || bytes.length < headerBytes) throw new Error("damaged token file header");
  const h = {
    model: new TextDecoder().decode(bytes.subarray(45, headerBytes)),
    sampleRate: view.getUint32(8, true), channels: view.getUint16(12, true), codebooks: view.getUint16(14, true),
    codebookSize: view.getUint32(16, true), frameRate: view.getFloat64(20, true),
    frames: Number(view.getBigUint64(28, true)), samples: Number(view.getBigUint64(36, true)),
  };
  const bits = Math.max(1, Math.ceil(Math.log2(h.codebookSize)));
  const count = h.frames * h.channels * h.codebooks;
  if (bytes.length !== headerBytes + Math.ceil((count * bits) / 8)) {
    throw new Error(`the file is ${bytes.length} bytes; its header promises ${headerBytes + Math.ceil((count * bits) / 8)}`);
  }
  const codes = new Uint16Array(h.frames * h.codebooks);
  for (let i = 0, k = 0, bit = headerBytes * 8; i < count; i++) {
    let code = 0;
    for (let b = 0; b < bits; b++, bit++) code = code * 2 + ((bytes[bit >> 3] >> (7 - (bit & 7))) & 1);
    if (code >= h.codebookSize) throw new Error(`a code of ${code}, past the codebook size ${h.codebookSize}`);
    if (Math.floor(i / h.codebooks) % h.channels === 0) codes[k++] = code;
  }
  // the stream's bitrate param: kbps of one channel, at log2(codebook size) bits a code
  h.bitrate = Math.round(h.codebooks * Math.log2(h.codebookSize) * h.frameRate * 1000) / 1e6;
  return { header: h, codes };
}

// frames [from, from + n) of channel 0 as a token message: little-endian uint16 [n, codebooks]
function tokenMessage(from, n) {
  const k = tokens.header.codebooks, view = new DataView(new ArrayBuffer(2 * n * k));
  for (let i = 0; i < n * k; i++) view.setUint16(2 * i, tokens.codes[from * k + i], true);
  return view.buffer;
}

function setParam(name, value) {
  const field = $(`param-${name}`);
  if (field) field.value = String(value);
}

// -- input -----------------------------------------------------------------------------------------
// an audio file, or a token file (recognised by its magic): that one picks its model and decode mode
async function useFile(f) {
  if (!f) return;
  file = f;
  tokens = null;
  state.tokenFile = null;
  $("drop-name").textContent = `${f.name} (${(f.size / 1024).toFixed(0)} KiB)`;
  document.querySelector('input[name="source"][value="file"]').checked = true;
  if (String.fromCharCode(...new Uint8Array(await f.slice(0, 4).arrayBuffer())) !== "WSCF") return;
  try {
    tokens = readTokenFile(await f.arrayBuffer());
  } catch (e) {
    file = null;
    return fail("token_file", e.message);
  }
  const h = tokens.header;
  state.tokenFile = h;
  if (state.models.some((m) => m.name === h.model)) {
    $("model").value = h.model;
    showModel();
  }
  setParam("mode", "decode");
  setParam("bitrate", h.bitrate);
  $("drop-name").textContent = `${f.name}: ${h.model} tokens, ${seconds(h.samples, h.sampleRate)} at ${h.bitrate} kbps`
    + ` (${h.codebooks} codebooks × ${h.frameRate} frames/s)` + (h.channels > 1 ? `, channel 1 of ${h.channels}` : "");
}

// the sent audio, kept until its output arrives: output frame t belongs to input frame t, so the
// original is replayed and drawn exactly aligned with the processed audio
class SentAudio {
  constructor() {
    this.blocks = []; // [{samples, offset, sentAt}]
  }

  push(samples, sentAt) {
    this.blocks.push({ samples, offset: 0, sentAt });
  }

  // the next n sent frames and when the last of them was sent
  take(n) {
    const out = new Float32Array(n);
    let filled = 0, sentAt = null;
    while (filled < n && this.blocks.length) {
      const b = this.blocks[0];
      const k = Math.min(n - filled, b.samples.length - b.offset);
      out.set(b.samples.subarray(b.offset, b.offset + k), filled);
      filled += k;
      b.offset += k;
      sentAt = b.sentAt;
      if (b.offset === b.samples.length) this.blocks.shift();
    }
    return { samples: out, sentAt };
  }
}

// -- streaming -------------------------------------------------------------------------------------
async function start() {
  clearError();
  if (!window.isSecureContext || !window.AudioWorkletNode) return fail("insecure");
  const model = currentModel();
  if (!model) return fail("http", "no models loaded");
  const source = document.querySelector('input[name="source"]:checked').value;
  if (source === "file" && !file) return fail("no_file");
  let params;
  try {
    params = collectParams();
  } catch (e) {
    return fail("bad_param", e.message);
  }
  const decoding = source === "file" && tokens !== null;
  if (decoding) {
    if (model.name !== tokens.header.model) return fail("token_file", `it holds ${tokens.header.model} tokens, not ${model.name}`);
    Object.assign(params, { mode: "decode", bitrate: tokens.header.bitrate }); // what the file holds
  } else if (params.mode === "decode") return fail("no_tokens");
  resetCounters();
  setStatus("connecting", `Connecting to ${model.name}…`);
  if (ctx) await ctx.close();
  ctx = new AudioContext({ latencyHint: "interactive" });
  if (ctx.sampleRate > 48000) {
    // the protocol takes 8-48 kHz: let the browser resample a faster device
    await ctx.close();
    ctx = new AudioContext({ latencyHint: "interactive", sampleRate: 48000 });
  }
  await ctx.audioWorklet.addModule("/static/worklets.js");
  if (source === "mic") {
    try {
      // the browser's own noise suppression would do the model's job before the model sees it
      mic = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (e) {
      return fail("microphone", e.name || String(e));
    }
    input = ctx.createMediaStreamSource(mic);
  } else if (!decoding) {
    let buffer;
    try {
      buffer = await ctx.decodeAudioData(await file.arrayBuffer());
    } catch (e) {
      return fail("decode", e.message || String(e));
    }
    input = new AudioBufferSourceNode(ctx, { buffer });
    input.onended = finishInput;
  }
  const url = new URL("/v1/stream", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (apiKey()) url.searchParams.set("api_key", apiKey()); // browsers cannot set WebSocket headers
  ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => ws.send(JSON.stringify({
    type: "start", model: model.name, sample_rate: ctx.sampleRate, channels: 1, encoding: "pcm_f32le", params,
  }));
  ws.onmessage = (e) => (typeof e.data === "string" ? onText(JSON.parse(e.data)) : onOutput(e.data));
  ws.onclose = onClose;
}

function resetCounters() {
  Object.assign(state, {
    ready: null, sampleRate: null, tracks: [], energy: [], selected: 0, sentFrames: 0, receivedFrames: 0, outputMessages: 0, tokenBytes: 0,
    events: [], roundTripMs: null, audioDelayMs: null, rtf: null, meanBatch: null, played: 0, underruns: 0,
    done: null, error: null, closeCode: null,
  });
  history = new SentAudio();
  pings = new Map();
  delays = [];
  trips = [];
  rtfBase = null;
  endSent = false;
  $("events").innerHTML = "";
  $("tracks").innerHTML = "";
  $("ab").innerHTML = "";
  for (const id of ["latency", "delay", "model-latency", "rtf", "sent", "received", "bitrate"]) $(id).textContent = "–";
}

function onText(msg) {
  if (msg.type === "ready") onReady(msg);
  else if (msg.type === "event") onEvent(msg);
  else if (msg.type === "flushed") onFlushed(msg);
  else if (msg.type === "done") onDone(msg);
  else if (msg.type === "error") fail(msg.code, msg.message, false);
}

function onReady(msg) {
  state.ready = msg;
  state.sampleRate = ctx.sampleRate;
  const out = msg.output;
  const outputs = out.kind === "sources" ? Array.from({ length: out.channels }, (_, i) => `Source ${i + 1}`)
    : out.kind === "audio" ? (out.channels === 1 ? ["Processed"] : Array.from({ length: out.channels }, (_, i) => `Processed ch ${i + 1}`))
    : [];
  // a decode stream has no original to compare with: its tokens are what goes out
  state.tracks = msg.input ? ["Decoded"] : ["Original", ...outputs];
  state.energy = state.tracks.map(() => 0);
  state.selected = outputs.length && !msg.input ? 1 : 0; // hear the model's output first
  buildTracks();
  $("listen").hidden = false;
  $("model-latency").textContent = `${msg.latency_ms.toFixed(1)} ms`;
  $("events-box").hidden = out.kind !== "events";
  $("bitrate").hidden = $("bitrate-label").hidden = out.kind !== "tokens" && !msg.input;

  const layout = msg.input;
  if (layout && (layout.codebooks !== tokens.header.codebooks || layout.frame_rate !== tokens.header.frameRate
    || layout.codebook_size !== tokens.header.codebookSize)) {
    return fail("token_file", `the server's ${msg.model.name} decodes ${layout.codebooks} codebooks of `
      + `${layout.codebook_size} at ${layout.frame_rate} frames/s; the file holds ${tokens.header.codebooks} of `
      + `${tokens.header.codebookSize} at ${tokens.header.frameRate}`);
  }
  player = new AudioWorkletNode(ctx, "player", {
    numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1],
    processorOptions: { prebufferFrames: Math.round(ctx.sampleRate * PREBUFFER_SECONDS) },
  });
  player.port.onmessage = (e) => Object.assign(state, { played: e.data.played, underruns: e.data.underruns });
  player.port.postMessage({ select: state.selected });
  gain = new GainNode(ctx, { gain: Number($("volume").value) });
  player.connect(gain).connect(ctx.destination);
  setStatus("streaming", `Streaming to ${msg.model.name}` + (msg.model.trained ? "" : " (untrained: random weights)") + ".");
  if (layout) sendTokens();
  else startCapture();
  timers.push(setInterval(ping, PING_MS), setInterval(pollMetrics, METRICS_MS), setInterval(showFigures, 250));
  pollMetrics();
}

// the microphone or an audio file: cut into blocks that go out as they are captured
function startCapture() {
  capture = new AudioWorkletNode(ctx, "capture", {
    numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
    channelCount: 1, channelCountMode: "explicit", channelInterpretation: "speakers", // mono mix-down
    processorOptions: { blockFrames: Math.round(ctx.sampleRate * BLOCK_SECONDS) },
  });
  capture.port.onmessage = (e) => (e.data === "flushed" ? sendEnd() : onCaptured(e.data));
  capture.connect(ctx.destination); // silent; keeps the node pulled by the graph
  input.connect(capture);
  if (input instanceof AudioBufferSourceNode) input.start();
}

// a decode stream: the file's token frames at their frame rate, a message per 20 ms, then `end`
function sendTokens() {
  const h = tokens.header, perMessage = Math.max(1, Math.round(h.frameRate * BLOCK_SECONDS)), t0 = performance.now();
  const send = () => {
    if (!ws || ws.readyState !== WebSocket.OPEN || endSent || state.status !== "streaming") return;
    const due = ((performance.now() - t0) / 1000) * h.frameRate; // frames the clock has reached
    while (state.sentFrames < h.frames && state.sentFrames <= due) {
      const n = Math.min(perMessage, h.frames - state.sentFrames);
      const message = tokenMessage(state.sentFrames, n);
      ws.send(message);
      state.sentFrames += n;
      state.tokenBytes += message.byteLength;
    }
    if (state.sentFrames === h.frames) finishInput();
  };
  timers.push(setInterval(send, BLOCK_SECONDS * 1000));
  send();
}

function buildTracks() {
  const rate = ctx.sampleRate;
  spectrograms = state.tracks.map((name, i) => {
    const box = document.createElement("figure");
    const canvas = document.createElement("canvas");
    canvas.width = 600;
    canvas.height = 110;
    canvas.id = `spectrogram-${i}`;
    const caption = document.createElement("figcaption");
    caption.textContent = name;
    box.append(caption, canvas);
    $("tracks").append(box);
    return new Spectrogram(canvas, rate, Math.min(8000, rate / 2));
  });
  if (state.tracks.length > 1) {
    state.tracks.forEach((name, i) => {
      const b = document.createElement("button");
      b.textContent = `${String.fromCharCode(65 + i)}: ${name}`;
      b.id = `listen-${i}`;
      b.onclick = () => select(i);
      $("ab").append(b);
    });
  }
  select(state.selected);
}

function select(i) {
  state.selected = i;
  if (player) player.port.postMessage({ select: i });
  $("ab").querySelectorAll("button").forEach((b, j) => b.setAttribute("aria-pressed", String(i === j)));
  document.querySelectorAll("#tracks figure").forEach((f, j) => f.classList.toggle("selected", i === j));
}

function onCaptured(block) {
  if (!ws || ws.readyState !== WebSocket.OPEN || endSent) return;
  ws.send(block.buffer);
  state.sentFrames += block.length;
  const kind = state.ready.output.kind;
  if (kind === "audio" || kind === "sources") history.push(block, performance.now());
  else {
    // nothing to align with: hear and see the original as it goes out
    player.port.postMessage({ tracks: [block] });
    spectrograms[0].push(block);
  }
}

function onOutput(data) {
  const out = state.ready.output;
  state.outputMessages++;
  if (out.kind === "tokens") {
    state.tokenBytes += data.byteLength;
    state.receivedFrames += data.byteLength / 2 / (out.rows * out.codebooks); // uint16 codes
    return;
  }
  const x = new Float32Array(data); // we asked for pcm_f32le
  const channels = out.channels, frames = x.length / channels;
  const columns = Array.from({ length: channels }, () => new Float32Array(frames));
  for (let t = 0, k = 0; t < frames; t++) for (let c = 0; c < channels; c++) columns[c][t] = x[k++];
  let tracks = columns; // a decode stream's audio has no original beside it
  if (!state.ready.input) {
    const original = history.take(frames);
    if (!endSent && original.sentAt !== null) delays.push(performance.now() - original.sentAt);
    tracks = [original.samples, ...columns];
  }
  state.receivedFrames += frames;
  tracks.forEach((t, i) => {
    spectrograms[i].push(t);
    state.energy[i] += t.reduce((sum, v) => sum + v * v, 0);
  });
  player.port.postMessage({ tracks }, tracks.map((t) => t.buffer)); // drawn first: transfer empties them
}

function onEvent(msg) {
  state.events.push(msg);
  const li = document.createElement("li");
  li.className = "event";
  const channel = msg.channel === undefined ? "" : ` ch ${msg.channel}`;
  li.innerHTML = `<b></b> <span></span>`;
  li.querySelector("b").textContent = msg.label;
  li.querySelector("span").textContent = `${msg.start.toFixed(2)}–${msg.end.toFixed(2)} s${channel}, score ${msg.score.toFixed(2)}`;
  $("events").prepend(li);
  while ($("events").children.length > KEEP_EVENTS) $("events").lastChild.remove();
}

let pingId = 0;
function ping() {
  if (!ws || ws.readyState !== WebSocket.OPEN || endSent) return;
  pings.set(++pingId, performance.now());
  ws.send(JSON.stringify({ type: "flush", id: pingId }));
}

function onFlushed(msg) {
  const sent = pings.get(msg.id);
  pings.delete(msg.id);
  if (sent !== undefined) trips.push(performance.now() - sent);
}

// the server's RTF of this model over the last interval: the change of the wavestream_rtf histogram
async function pollMetrics() {
  const name = state.ready && state.ready.model.name;
  if (!name) return;
  let text;
  try {
    const r = await fetch("/metrics");
    if (!r.ok) return;
    text = await r.text();
  } catch {
    return; // figures only: a missed poll is no error
  }
  const totals = { rtf_sum: 0, rtf_count: 0, batch_size_sum: 0, batch_size_count: 0 };
  const line = /^wavestream_(rtf_sum|rtf_count|batch_size_sum|batch_size_count)\{(?:[^}]*,)?model="((?:[^"\\]|\\.)*)"[^}]*\} (\S+)$/gm;
  for (const [, metric, label, value] of text.matchAll(line)) {
    // a stream with params is labelled name{params}
    if (label === name || label.startsWith(`${name}{`)) totals[metric] += Number(value);
  }
  if (rtfBase && totals.rtf_count > rtfBase.rtf_count) {
    state.rtf = (totals.rtf_sum - rtfBase.rtf_sum) / (totals.rtf_count - rtfBase.rtf_count);
    state.meanBatch = (totals.batch_size_sum - rtfBase.batch_size_sum) / (totals.batch_size_count - rtfBase.batch_size_count);
  }
  rtfBase = totals;
}

function showFigures() {
  trips = trips.slice(-20);
  delays = delays.slice(-50);
  state.roundTripMs = median(trips);
  state.audioDelayMs = median(delays);
  $("latency").textContent = ms(state.roundTripMs);
  const audioOut = state.ready && ["audio", "sources"].includes(state.ready.output.kind);
  $("delay").textContent = audioOut || !state.ready ? ms(state.audioDelayMs) : "no audio comes back";
  if (state.rtf !== null) $("rtf").textContent = `${state.rtf.toFixed(3)} (mean batch ${state.meanBatch.toFixed(1)})`;
  const rate = ctx.sampleRate, out = state.ready && state.ready.output, input = state.ready && state.ready.input;
  $("sent").textContent = input ? `${state.sentFrames} token frames (${seconds(state.sentFrames, input.frame_rate)})`
    : seconds(state.sentFrames, rate);
  const codes = out && out.kind === "tokens" ? out : input; // the token side of the stream, if any
  if (codes) {
    // per second of audio: token frames received for audio sent (encode), or token frames sent (decode)
    const tokenFrames = input ? state.sentFrames : state.receivedFrames;
    const audioSeconds = input ? state.sentFrames / input.frame_rate : state.sentFrames / rate;
    // counted: the codes at log2(codebook size) bits each (as a codec's bitrate is quoted; 16 when
    // the server does not say the size), and the bytes on the wire (uint16)
    const bits = codes.codebook_size ? Math.log2(codes.codebook_size) : 16;
    const kbps = (tokenFrames * codes.rows * codes.codebooks * bits) / audioSeconds / 1000;
    const wire = (8 * state.tokenBytes) / audioSeconds / 1000;
    $("bitrate").textContent = audioSeconds ? `${kbps.toFixed(2)} kbit/s (${codes.codebooks} codebooks × `
      + `${codes.frame_rate} frames/s × ${bits} bits); ${wire.toFixed(2)} kbit/s on the wire` : "–";
  }
  if (out && out.kind === "tokens") {
    $("received").textContent = `${state.receivedFrames} token frames`;
  } else if (out && out.kind === "events") {
    $("received").textContent = `${state.events.length} events`;
  } else {
    $("received").textContent = seconds(state.receivedFrames, rate) + (state.underruns ? ` (${state.underruns} playback gaps)` : "");
  }
}

// the input is over (file or tokens sent, or Stop): send what the capture holds (if any), then `end`
function finishInput() {
  if (state.status !== "streaming") return;
  setStatus("finishing", "Finishing: waiting for the last output…");
  if (state.ready.input) sendEnd();
  else capture.port.postMessage("flush");
}

function sendEnd() {
  teardownInput();
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "end" }));
  endSent = true;
}

function onDone(msg) {
  state.done = msg;
  showFigures();
  clearTimers();
  if (player) player.port.postMessage({ ended: true });
  const p50 = msg.stats && msg.stats.latency_ms && msg.stats.latency_ms.p50;
  const server = p50 === undefined ? "" : ` Server time per message: p50 ${p50} ms.`;
  if (msg.reason === "shutdown") {
    setStatus("done", `The server is shutting down: it sent everything for the audio it had and ended the stream.${server}`);
  } else {
    const streamed = state.ready.input ? `${state.sentFrames} token frames decoded into `
      + `${seconds(state.receivedFrames, ctx.sampleRate)} of audio` : `${seconds(state.sentFrames, ctx.sampleRate)} streamed`;
    setStatus("done", `Done: ${streamed}.${server}`);
  }
}

function onClose(e) {
  state.closeCode = e.code;
  clearTimers();
  teardownInput();
  if (state.status === "error" || state.status === "done") return;
  if (state.status === "connecting" && e.code === 1006) return fail("network", "the WebSocket did not open");
  fail(CLOSES[e.code] ? e.code : "closed", `close code ${e.code}${e.reason ? ` ${e.reason}` : ""}`);
}

function teardownInput() {
  if (input) {
    input.onended = null;
    try {
      input.disconnect();
      if (input instanceof AudioBufferSourceNode) input.stop();
    } catch {
      // not started yet
    }
    input = null;
  }
  if (mic) mic.getTracks().forEach((t) => t.stop());
  mic = null;
}

function clearTimers() {
  timers.forEach(clearInterval);
  timers = [];
}

function stop() {
  if (state.status === "streaming") return finishInput();
  if (state.status === "connecting") return fail("closed", "stopped before the stream started");
  // after the stream: silence what is still playing
  if (ctx) ctx.close();
  ctx = null;
  setStatus(state.status, $("status").textContent);
}

// -- wiring ----------------------------------------------------------------------------------------
function init() {
  const key = new URLSearchParams(location.search).get("api_key");
  if (key) $("key").value = key;
  $("model").onchange = showModel;
  $("key").onchange = loadModels;
  $("start").onclick = () => start().catch((e) => fail("closed", e.message || String(e)));
  $("stop").onclick = stop;
  $("volume").oninput = () => gain && gain.gain.setTargetAtTime(Number($("volume").value), ctx.currentTime, 0.02);
  const pick = (f) => useFile(f).catch((e) => fail("decode", e.message || String(e)));
  $("file").onchange = (e) => pick(e.target.files[0]);
  const drop = $("drop");
  drop.ondragover = (e) => {
    e.preventDefault();
    drop.classList.add("over");
  };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    pick(e.dataTransfer.files[0]);
  };
  document.addEventListener("keydown", (e) => {
    // A, B, C...: switch what you hear while playing
    const i = e.key.toUpperCase().charCodeAt(0) - 65;
    if (e.target.tagName !== "INPUT" && e.key.length === 1 && i >= 0 && i < state.tracks.length) select(i);
  });
  loadModels();
}

init();
