// A scrolling live spectrogram on a canvas: one column per `hop` samples (a 1024-point Hann-windowed
// FFT), 0 to `maxHz` from bottom to top, -100 to -20 dBFS from dark to bright.

const SIZE = 1024;
const HANN = Float32Array.from({ length: SIZE }, (_, i) => 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / SIZE));

// magnitudes squared of the first SIZE/2 bins of a real frame (iterative radix-2 FFT)
function powerSpectrum(frame) {
  const re = Float32Array.from(frame, (v, i) => v * HANN[i]);
  const im = new Float32Array(SIZE);
  for (let i = 1, j = 0; i < SIZE; i++) {
    let bit = SIZE >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) [re[i], re[j]] = [re[j], re[i]];
  }
  for (let len = 2; len <= SIZE; len <<= 1) {
    const angle = (-2 * Math.PI) / len;
    for (let start = 0; start < SIZE; start += len) {
      for (let k = 0; k < len / 2; k++) {
        const wr = Math.cos(angle * k), wi = Math.sin(angle * k);
        const a = start + k, b = a + len / 2;
        const tr = re[b] * wr - im[b] * wi, ti = re[b] * wi + im[b] * wr;
        re[b] = re[a] - tr; im[b] = im[a] - ti;
        re[a] += tr; im[a] += ti;
      }
    }
  }
  return Float32Array.from({ length: SIZE / 2 }, (_, k) => re[k] * re[k] + im[k] * im[k]);
}

// dark blue -> magenta -> yellow, for 0..1
function color(v) {
  const r = Math.min(255, 510 * v), g = Math.max(0, Math.min(255, 510 * v - 255)), b = Math.max(0, 160 - 160 * v) + 40 * v;
  return [r, g, b];
}

export class Spectrogram {
  constructor(canvas, sampleRate, maxHz = 8000, hop = 512) {
    this.canvas = canvas;
    this.g = canvas.getContext("2d");
    this.hop = hop;
    this.bins = Math.min(SIZE / 2, Math.round((maxHz / sampleRate) * SIZE));
    this.history = new Float32Array(SIZE); // the latest SIZE samples
    this.pending = 0; // samples since the last column
    this.clear();
  }

  clear() {
    this.g.fillStyle = "#0b0b28";
    this.g.fillRect(0, 0, this.canvas.width, this.canvas.height);
  }

  push(samples) {
    for (let i = 0; i < samples.length;) {
      const n = Math.min(samples.length - i, this.hop - this.pending);
      this.history.copyWithin(0, n);
      this.history.set(samples.subarray(i, i + n), SIZE - n);
      this.pending += n;
      i += n;
      if (this.pending === this.hop) {
        this.pending = 0;
        this.column(powerSpectrum(this.history));
      }
    }
  }

  column(power) {
    const { width, height } = this.canvas;
    this.g.drawImage(this.canvas, -1, 0); // scroll one pixel left
    const col = this.g.createImageData(1, height);
    for (let y = 0; y < height; y++) {
      const bin = Math.floor(((height - 1 - y) / height) * this.bins);
      const db = 10 * Math.log10(power[bin] / (SIZE * SIZE / 16) + 1e-12); // 0 dB: a full-scale sine
      const [r, g, b] = color(Math.max(0, Math.min(1, (db + 100) / 80)));
      col.data.set([r, g, b, 255], 4 * y);
    }
    this.g.putImageData(col, width - 1, 0);
  }
}
