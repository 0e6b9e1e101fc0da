// A one-line progress meter for long CLI runs, redrawn in place on a terminal and silent
// otherwise (pipes, CI logs and tests get the final output only).
import type { WriteStream } from 'node:tty';

export class ProgressLine {
  private lastDraw = 0;
  private drawn = false;
  private readonly started = performance.now();

  constructor(
    private readonly stream: NodeJS.WriteStream | WriteStream = process.stderr,
    private readonly enabled: boolean = Boolean(stream.isTTY),
  ) {}

  /** Redraws at most ~10 times a second, and always when done === total. */
  update(label: string, done: number, total: number): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (done < total && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const seconds = (now - this.started) / 1000;
    const width = 24;
    const filled = total > 0 ? Math.round((width * done) / total) : width;
    const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
    const line = `${label} [${bar}] ${done}/${total} ${seconds.toFixed(1)} s`;
    const columns = 'columns' in this.stream && this.stream.columns ? this.stream.columns : 120;
    this.stream.write(`\r\x1b[2K${line.slice(0, columns - 1)}`);
    this.drawn = true;
  }

  /** Clears the line so the next output starts at column 0. */
  done(): void {
    if (this.enabled && this.drawn) this.stream.write('\r\x1b[2K');
    this.drawn = false;
  }
}
