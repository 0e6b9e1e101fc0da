// Progress of `rmserve train` and `rmserve eval`: on a terminal, a cli-progress bar with the
// count, the rate and cli-progress's ETA, redrawn in place; anywhere else (pipes, CI logs, the
// tests), plain lines, one at most every `plainEveryMs` and one when a phase ends, so a log shows
// how far a long run got without a carriage-return mess. Log lines printed while a bar is up go
// through log(): cli-progress's MultiBar (here with one bar) writes them above the bar and redraws
// the bar below. (SingleBar saves the cursor at start and restores it at stop, which puts the next
// output back over the lines logged in between.)
import { MultiBar, type SingleBar } from 'cli-progress';

export interface ProgressOptions {
  stream?: NodeJS.WriteStream;
  /** draw a bar (default: when the stream is a terminal) */
  tty?: boolean;
  /** plain mode: the longest gap between two lines (default 10 s) */
  plainEveryMs?: number;
  /** milliseconds since some origin; a test's clock in place of performance.now */
  now?: () => number;
}

/** "4m05s", "1h02m", "12s": the same shape as cli-progress's {eta_formatted}. */
export function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

function formatRate(perSecond: number, unit: string): string {
  if (!Number.isFinite(perSecond)) return `? ${unit}/s`;
  return `${perSecond >= 100 ? Math.round(perSecond) : perSecond.toPrecision(3)} ${unit}/s`;
}

export class Progress {
  private readonly stream: NodeJS.WriteStream;
  private readonly tty: boolean;
  private readonly plainEveryMs: number;
  private readonly now: () => number;
  private multi: MultiBar | undefined;
  private bar: SingleBar | undefined;
  private label = '';
  private unit = '';
  private total = 0;
  private first = 0;
  private value = 0;
  private startedAt = 0;
  private lastPlainAt = 0;
  private active = false;

  constructor(options: ProgressOptions = {}) {
    this.stream = options.stream ?? process.stderr;
    this.tty = options.tty ?? this.stream.isTTY === true;
    this.plainEveryMs = options.plainEveryMs ?? 10_000;
    this.now = options.now ?? (() => performance.now());
  }

  /** Starts a phase of `total` units ("pairs", "steps"), counting from `first` (a resumed run starts past 0). */
  start(label: string, total: number, unit: string, first = 0): void {
    if (this.active) this.stop();
    this.label = label;
    this.unit = unit;
    this.total = total;
    this.first = first;
    this.value = first;
    this.startedAt = this.now();
    this.lastPlainAt = this.startedAt;
    this.active = true;
    if (!this.tty) return;
    this.multi = new MultiBar({
      stream: this.stream,
      format: `{label} {bar} {percentage}% | {value}/{total} ${this.unit} | {rate} | ETA {eta_formatted}{fields}`,
      barCompleteChar: '\u2588',
      barIncompleteChar: '\u2591',
      barsize: 24,
      hideCursor: true,
      etaBuffer: 50,
    });
    this.bar = this.multi.create(total, first, { label, rate: formatRate(Number.NaN, this.unit), fields: '' });
  }

  /** Sets the count; `fields` is extra text after the ETA (loss, lr, tokens per second). */
  update(value: number, fields = ''): void {
    if (!this.active) return;
    this.value = value;
    const now = this.now();
    const rate = ((value - this.first) * 1000) / (now - this.startedAt);
    if (this.bar !== undefined) {
      this.bar.update(value, { rate: formatRate(rate, this.unit), fields: fields === '' ? '' : ` | ${fields}` });
      return;
    }
    // The last line is stop()'s, with the time taken.
    if (value >= this.total || now - this.lastPlainAt < this.plainEveryMs) return;
    this.lastPlainAt = now;
    this.stream.write(
      `${this.label}: ${value}/${this.total} ${this.unit} (${Math.floor((100 * value) / Math.max(1, this.total))}%), ` +
        `${formatRate(rate, this.unit)}, ETA ${formatSeconds((this.total - value) / rate)}${fields === '' ? '' : `, ${fields}`}\n`,
    );
  }

  /** A line above the bar (or just the line, without one). */
  log(line: string): void {
    if (this.multi === undefined) {
      this.stream.write(`${line}\n`);
      return;
    }
    // Drawn now rather than at the next tick, so the line keeps its place among other output.
    this.multi.log(`${line}\n`);
    this.multi.update();
  }

  /** Ends the phase: the bar stays on screen at its last value; plain mode says where it got and how long it took. */
  stop(): void {
    if (!this.active) return;
    this.active = false;
    if (this.multi !== undefined) {
      this.multi.stop();
      this.multi = undefined;
      this.bar = undefined;
      return;
    }
    const seconds = (this.now() - this.startedAt) / 1000;
    const rate = seconds > 0 ? `, ${formatRate((this.value - this.first) / seconds, this.unit)}` : '';
    this.stream.write(`${this.label}: ${this.value}/${this.total} ${this.unit} in ${seconds.toFixed(1)} s${rate}\n`);
  }
}
