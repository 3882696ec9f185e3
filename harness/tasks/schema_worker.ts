/**
 * Worker-thread side of {@linkcode SchemaValidator} (`schema_validator.ts`): compiles JSON Schemas
 * with Ajv (the draft chosen by `$schema`, see `schemaDialect`) and validates instances, caching
 * compiled schemas by their text. Runs in a worker so that a pathological schema (a catastrophic
 * regular expression, a huge `uniqueItems` array) can be stopped by terminating the thread.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { compileSchema } from "./schema_compile.ts";
import type { ValidationRequest, ValidationResponse } from "./schema_validator.ts";

self.onmessage = (event: MessageEvent<ValidationRequest>) => {
  const { id, schema, data } = event.data;
  let response: ValidationResponse;
  const compiled = compileSchema(schema);
  if (typeof compiled === "string") {
    response = { id, valid: false, code: "schema_error", message: compiled };
  } else {
    let valid: boolean;
    let message = "";
    try {
      valid = compiled(JSON.parse(data));
      if (!valid) message = compiled.errorText();
    } catch (e) {
      valid = false;
      message = `validation threw: ${(e as Error).message}`;
    }
    const notes = compiled.notes.join("; ");
    message = [message, notes].filter((m) => m).join("; ");
    response = { id, valid, code: valid ? "ok" : "schema_invalid", message };
  }
  try {
    self.postMessage(response);
  } catch (e) {
    // Never leave the validator waiting: an answer that cannot be sent is the schema's failure.
    self.postMessage(
      {
        id,
        valid: false,
        code: "schema_error",
        message: `validation gave no usable answer: ${(e as Error).message}`,
      } satisfies ValidationResponse,
    );
  }
};

// Tells the validator that loading is done, so its time limit covers validation only.
self.postMessage({ ready: true });
