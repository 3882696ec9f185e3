/**
 * JSON Schema validation with a per-sample time limit. Ajv is synchronous: a schema whose regular
 * expressions backtrack catastrophically, or an instance that is expensive to check, would block
 * the thread forever. So validation runs on a worker thread (`schema_worker.ts`, which compiles
 * and caches schemas, `schema_compile.ts`); a call that does not answer within `timeoutMs` ends
 * with code `schema_timeout`, and the worker is terminated and replaced for the next call.
 *
 * @module
 */

/** A request to the worker: schema and instance as JSON text. */
export interface ValidationRequest {
  id: number;
  schema: string;
  data: string;
}

/** The worker's answer. */
export interface ValidationResponse {
  id: number;
  valid: boolean;
  /** `ok`, `schema_invalid` (the instance fails), `schema_error` (the schema does not compile). */
  code: "ok" | "schema_invalid" | "schema_error";
  message: string;
}

/** The result of one validation. */
export interface Validation {
  valid: boolean;
  code: ValidationResponse["code"] | "schema_timeout";
  message: string;
}

/** Validates instances against JSON Schemas off the main thread, with a time limit per call. */
export class SchemaValidator {
  #worker: Worker | undefined;
  /** Resolves once the current worker has loaded (its start-up is not charged to a sample). */
  #ready: Promise<void> | undefined;
  #next = 0;

  /** @param timeoutMs Limit for one validation (compilation included, when not cached). */
  constructor(readonly timeoutMs = 2000) {}

  /** Validates `data` against `schema` (a JSON Schema: object or boolean); one call at a time. */
  async validate(schema: unknown, data: unknown): Promise<Validation> {
    if (!this.#worker) {
      const worker = new Worker(new URL("./schema_worker.ts", import.meta.url), { type: "module" });
      this.#worker = worker;
      this.#ready = new Promise<void>((resolve, reject) => {
        worker.onmessage = () => resolve();
        worker.onerror = (event) => {
          event.preventDefault();
          reject(new Error(`Schema validation worker failed to start: ${event.message}`));
        };
      });
    }
    const worker = this.#worker;
    await this.#ready;
    const id = this.#next++;
    const request: ValidationRequest = {
      id,
      schema: JSON.stringify(schema),
      data: JSON.stringify(data),
    };
    return new Promise<Validation>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.close();
        resolve({
          valid: false,
          code: "schema_timeout",
          message: `validation took longer than ${this.timeoutMs} ms`,
        });
      }, this.timeoutMs);
      worker.onmessage = (event: MessageEvent<ValidationResponse>) => {
        if (event.data.id !== id) return;
        clearTimeout(timer);
        const { valid, code, message } = event.data;
        resolve({ valid, code, message });
      };
      worker.onerror = (event) => {
        event.preventDefault();
        clearTimeout(timer);
        this.close();
        reject(new Error(`Schema validation worker failed: ${event.message}`));
      };
      worker.postMessage(request);
    });
  }

  /** Stops the worker (a later call starts a new one). */
  close(): void {
    this.#worker?.terminate();
    this.#worker = undefined;
    this.#ready = undefined;
  }
}
