// AudioWorklet processors of the page (they run on the audio thread, loaded by audioWorklet.addModule).
//   "capture": the input, down-mixed to mono, cut into fixed blocks that the page sends to the server.
//   "player":  plays time-aligned tracks (the original and each output) and switches between them
//              while playing, so that A/B compares the same moment of the same stream.

class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.block = new Float32Array(options.processorOptions.blockFrames);
    this.fill = 0;
    this.running = true;
    // "flush": hand over the partial block and stop (end of the input)
    this.port.onmessage = (e) => {
      if (e.data === "flush" && this.running) {
        this.send();
        this.running = false;
        this.port.postMessage("flushed");
      }
    };
  }

  send() {
    if (!this.fill) return;
    const block = this.block.slice(0, this.fill);
    this.fill = 0;
    this.port.postMessage(block, [block.buffer]);
  }

  process(inputs) {
    if (!this.running) return false;
    const x = inputs[0][0]; // absent while nothing is connected
    for (let i = 0; x && i < x.length;) {
      const n = Math.min(x.length - i, this.block.length - this.fill);
      this.block.set(x.subarray(i, i + n), this.fill);
      this.fill += n;
      i += n;
      if (this.fill === this.block.length) this.send();
    }
    return true;
  }
}

class Player extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.prebuffer = options.processorOptions.prebufferFrames;
    this.queue = []; // [{tracks: [Float32Array, ...], offset}], every track of an entry equally long
    this.selected = 0;
    this.buffered = 0;
    this.playing = false; // false until `prebuffer` frames wait, and again after running dry
    this.ended = false; // no more audio will come: running dry is the end, not an underrun
    this.played = 0;
    this.underruns = 0;
    this.reported = 0;
    this.port.onmessage = (e) => {
      const m = e.data;
      if (m.tracks) {
        this.queue.push({ tracks: m.tracks, offset: 0 });
        this.buffered += m.tracks[0].length;
      }
      if (m.select !== undefined) this.selected = m.select;
      if (m.ended) this.ended = true;
    };
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing && (this.buffered >= this.prebuffer || (this.ended && this.buffered))) this.playing = true;
    let i = 0;
    while (this.playing && i < out.length && this.queue.length) {
      const head = this.queue[0];
      const track = head.tracks[Math.min(this.selected, head.tracks.length - 1)];
      const n = Math.min(out.length - i, track.length - head.offset);
      out.set(track.subarray(head.offset, head.offset + n), i);
      i += n;
      head.offset += n;
      this.buffered -= n;
      this.played += n;
      if (head.offset === track.length) this.queue.shift();
    }
    if (this.playing && i < out.length) {
      this.playing = false; // wait for a new prebuffer rather than crackle frame by frame
      if (!this.ended) this.underruns++;
    }
    if (currentFrame - this.reported >= sampleRate / 4) {
      this.reported = currentFrame;
      this.port.postMessage({ played: this.played, underruns: this.underruns, buffered: this.buffered });
    }
    return true;
  }
}

registerProcessor("capture", Capture);
registerProcessor("player", Player);
