/**
 * Progress on stderr: a live bar redrawn in place on a terminal, plain periodic lines otherwise
 * (as in CI logs), nothing when quiet.
 *
 * @module
 */

/** Where progress goes. */
export interface ProgressOptions {
  quiet?: boolean;
  /** Defaults to whether stderr is a terminal. */
  tty?: boolean;
  /** Seconds between plain lines while a step runs (default 10). */
  interval?: number;
  write?: (text: string) => void;
}

/** Tracks steps (cell × task) and the fraction done of the current one. */
export class Progress {
  readonly #tty: boolean;
  readonly #quiet: boolean;
  readonly #interval: number;
  readonly #write: (text: string) => void;
  #done = 0;
  #label = "";
  #fraction = 0;
  #lastLine = 0;
  readonly #started = performance.now();

  constructor(readonly total: number, options: ProgressOptions = {}) {
    this.#quiet = options.quiet ?? false;
    this.#tty = options.tty ?? Deno.stderr.isTerminal();
    this.#interval = (options.interval ?? 10) * 1000;
    const encoder = new TextEncoder();
    this.#write = options.write ?? ((t) => Deno.stderr.writeSync(encoder.encode(t)));
  }

  /** Starts a step. */
  begin(label: string): void {
    this.#label = label;
    this.#fraction = 0;
    this.#lastLine = performance.now();
    if (this.#tty) this.#draw();
  }

  /** Updates a step's fraction (0..1); steps may interleave when cells run in parallel. */
  update(fraction: number, label = this.#label): void {
    this.#fraction = fraction;
    this.#label = label;
    if (this.#quiet) return;
    if (this.#tty) this.#draw();
    else if (performance.now() - this.#lastLine >= this.#interval) {
      this.#lastLine = performance.now();
      this.#line(`${this.#label} ${(fraction * 100).toFixed(0)}%`);
    }
  }

  /** Ends a step with a one-line outcome. */
  end(outcome: string, label = this.#label): void {
    this.#done++;
    this.#label = label;
    if (this.#quiet) return;
    if (this.#tty) this.#write("\r\x1b[2K");
    this.#line(`${this.#label}: ${outcome}`);
    if (this.#tty && this.#done < this.total) this.#draw();
  }

  /** Clears the bar. */
  finish(): void {
    if (this.#tty && !this.#quiet) this.#write("\r\x1b[2K");
  }

  #line(text: string): void {
    const secs = ((performance.now() - this.#started) / 1000).toFixed(1);
    this.#write(`[${this.#done}/${this.total} ${secs}s] ${text}\n`);
  }

  #draw(): void {
    if (this.#quiet) return;
    const width = 24;
    const overall = (this.#done + this.#fraction) / Math.max(1, this.total);
    const filled = Math.round(overall * width);
    const bar = "█".repeat(filled) + "░".repeat(width - filled);
    const pct = (this.#fraction * 100).toFixed(0).padStart(3);
    this.#write(`\r\x1b[2K${bar} ${this.#done}/${this.total} ${this.#label} ${pct}%`);
  }
}
