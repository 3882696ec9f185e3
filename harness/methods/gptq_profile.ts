/**
 * Where GPTQ's time goes, printed on stderr when `QUANTBENCH_PROFILE=1`: seconds per phase for
 * each layer and for the whole model, so that a run on the GPU machine shows which part to speed
 * up next. Phases: `forwardLinear`, `forwardGated` (gate, up and SwiGLU), `forwardAttention`,
 * `forwardNorm`, `forwardRope`, `forwardAdd`, `forwardHeadNorm`, `forwardBias` (the calibration forward's kernels on the GPU,
 * transfers included; where the block's values stay on the device these only submit work, and
 * its time shows in the next phase that waits for the device: `hessian`, `readBack`),
 * `readBack` (values the host reads: AWQ's and SmoothQuant's captures, what the CPU's steps
 * read), `hessian` (sums, read back, damping), `factor`, `decode` (the
 * float weights), `prepare` (the loop's starting weights and grid), `deviceLoop` (the column
 * loop on the GPU, read back and codes included), `hostLoop` (the loop with blocks quantized on
 * the host), `cpuLoop` (`device: cpu`), and `cpu:<step>` for each kind of the forward's steps
 * left to the CPU (all but linears and attention without a device store; Hadamard transforms
 * with one); `other` is the layer's wall time
 * outside them.
 *
 * @module
 */

/** Whether the environment asks for the profile (`QUANTBENCH_PROFILE=1`). */
export function profileRequested(): boolean {
  try {
    return Deno.env.get("QUANTBENCH_PROFILE") === "1";
  } catch {
    // Without --allow-env there is no profile to print.
    return false;
  }
}

/** Seconds per phase, per layer and in total. */
export class GptqProfile {
  readonly #layer = new Map<string, number>();
  readonly #total = new Map<string, number>();
  readonly #write: (line: string) => void;
  readonly #method: string;
  #start = performance.now();
  readonly #begin = this.#start;

  /**
   * A profile writing its lines to `write` (default stderr), each starting `<method> profile`
   * (AWQ and SmoothQuant reuse it on their calibration forward and searches).
   */
  constructor(write: (line: string) => void = (line) => console.error(line), method = "gptq") {
    this.#write = write;
    this.#method = method;
  }

  /** Adds the time since `since` (a `performance.now()`) to `phase`; returns now. */
  add(phase: string, since: number): number {
    const now = performance.now();
    this.addSeconds(phase, (now - since) / 1000);
    return now;
  }

  /** Adds `seconds` to `phase`. */
  addSeconds(phase: string, seconds: number): void {
    this.#layer.set(phase, (this.#layer.get(phase) ?? 0) + seconds);
    this.#total.set(phase, (this.#total.get(phase) ?? 0) + seconds);
  }

  /** Writes the layer's phases and wall time since the last call, and starts the next. */
  layer(label: string): void {
    const now = performance.now();
    this.#write(line(`${this.#method} profile ${label}`, (now - this.#start) / 1000, this.#layer));
    this.#layer.clear();
    this.#start = now;
  }

  /** Writes the totals over every layer. */
  total(): void {
    const wall = (performance.now() - this.#begin) / 1000;
    this.#write(line(`${this.#method} profile total`, wall, this.#total));
  }
}

function line(label: string, wall: number, phases: Map<string, number>): string {
  let accounted = 0;
  const parts = [...phases].map(([name, s]) => {
    accounted += s;
    return `${name} ${s.toFixed(3)}`;
  });
  parts.push(`other ${(wall - accounted).toFixed(3)}`);
  return `${label}: ${wall.toFixed(3)} s (${parts.join(", ")})`;
}
