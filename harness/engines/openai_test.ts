import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModelPath } from "../models/load.ts";
import { InProcessEngine } from "./in_process.ts";
import { OpenAIEngine, OpenAIEngineError, type OpenAIEngineOptions } from "./openai.ts";
import { serveEngine } from "../serve/server.ts";
import { parseSuite } from "../suite/load.ts";
import { runSuite } from "../runner/run.ts";
import type { ResultRow } from "../../core/row.ts";
import type { LlamaModel } from "../../core/model.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const micro = join(root, "fixtures/models/micro");

let loaded: Promise<LlamaModel> | undefined;
const microModel = () => loaded ??= loadModelPath(micro);

function options(baseUrl: string, extra: Partial<OpenAIEngineOptions> = {}): OpenAIEngineOptions {
  return {
    baseUrl,
    model: "micro",
    maxConcurrency: 2,
    timeoutMs: 10_000,
    retries: 1,
    retryBaseMs: 10,
    topLogprobs: 3,
    promptLogprobs: false,
    chat: true,
    ...extra,
  };
}

/** A real HTTP server on 127.0.0.1 answering with `handler`; its base URL ends in /v1. */
function misbehaving(handler: (request: Request, hits: number) => Response | Promise<Response>) {
  let hits = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (r) => {
    hits++;
    return handler(r, hits);
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/v1`,
    hits: () => hits,
    close: () => server.shutdown(),
  };
}

/** Whether `e` is an {@linkcode OpenAIEngineError} whose message includes `text`. */
function is(e: unknown, text: string): boolean {
  assert.ok(e instanceof OpenAIEngineError, String(e));
  assert.ok(e.message.includes(text), e.message);
  return true;
}

const modelsList = () =>
  Response.json({ object: "list", data: [{ id: "micro", object: "model" }] });

Deno.test("openai engine: the same perplexity, json and tool_use outcomes as the in-process cell", async () => {
  const model = await microModel();
  const inProcess = await InProcessEngine.load(model, "cpu");
  const server = serveEngine(inProcess, { modelName: "micro", port: 0 });
  const dir = await Deno.makeTempDir({ prefix: "openai_parity_" });
  try {
    const suiteText = `name: openai_parity
models:
  - { id: micro, path: ${micro} }
engines:
  served: { kind: openai, base_url: "${server.url}", model: micro, top_logprobs: 3 }
methods: [none]
formats: [f32]
backends: [cpu, served]
tasks:
  - { task: perplexity, dataset: ${root}fixtures/datasets/heldout.txt, context: 64, max_tokens: 640 }
  - { task: json, dataset: ${root}fixtures/datasets/json_tasks.jsonl, limit: 3, max_new_tokens: 48 }
  - { task: tool_use, dataset: ${root}fixtures/datasets/tool_calls.jsonl, limit: 4, tool_format: openai, max_new_tokens: 64 }
  - { task: kld, dataset: ${root}fixtures/datasets/heldout.txt, context: 64, max_tokens: 256, reference: { method: none, format: f32 } }
`;
    const suite = await parseSuite(suiteText, join(dir, "suite.yaml"));
    const results = await runSuite(suite, {
      runId: "t",
      cacheDir: join(dir, "cache"),
      jobs: 1,
      quiet: true,
    });
    const rows = (backend: string) => results.rows.filter((r) => r.backend === backend);
    const cpu = rows("cpu");
    const served = rows("served");
    const find = (list: ResultRow[], task: string, metric: string) =>
      list.find((r) => r.task === task && r.metric === metric);
    const ppl = find(cpu, "perplexity", "ppl")!;
    const ppl2 = find(served, "perplexity", "ppl")!;
    assert.deepEqual(ppl2.status, "ok", ppl2.detail);
    assert.ok(Math.abs(ppl.value! - ppl2.value!) < 1e-4, `${ppl.value} vs ${ppl2.value}`);
    for (const task of ["json", "tool_use"]) {
      const here = cpu.filter((r) => r.task === task);
      assert.ok(here.length > 0);
      for (const r of here) {
        const other = find(served, task, r.metric)!;
        assert.deepEqual(other.status, "ok", other.detail);
        assert.deepEqual(other.samples?.values, r.samples?.values, `${task} ${r.metric}`);
        assert.deepEqual(other.samples?.ids, r.samples?.ids);
      }
    }
    // The tool calls really were made (the fixture model is trained to call tools).
    assert.ok(find(cpu, "tool_use", "accuracy")!.value! > 0);
    const kld = served.find((r) => r.task === "kld")!;
    assert.deepEqual(kld.status, "skipped");
    assert.match(kld.detail, /top 3 log-probabilities/);
  } finally {
    await server.shutdown();
    inProcess.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openai engine: a killed run resumes from cached responses; the API key is never written", async () => {
  const model = await microModel();
  const inProcess = await InProcessEngine.load(model, "cpu");
  const real = serveEngine(inProcess, { modelName: "micro", port: 0 });
  const key = "sk-secret-do-not-write-4242";
  const dir = await Deno.makeTempDir({ prefix: "openai_resume_" });
  let failFrom = 4;
  let forwarded = 0;
  // A proxy that checks the key, answers 429 once, then forwards; from the `failFrom`-th
  // completion on it answers 500 (as a server dying mid-run).
  let completions = 0;
  let limited = false;
  const proxy = misbehaving(async (request) => {
    if (request.headers.get("authorization") !== `Bearer ${key}`) {
      return Response.json({ error: { message: "bad key" } }, { status: 401 });
    }
    const path = new URL(request.url).pathname;
    if (path.endsWith("/completions")) {
      if (!limited) {
        limited = true;
        return Response.json({ error: { message: "slow down" } }, { status: 429 });
      }
      if (++completions >= failFrom) {
        return Response.json({ error: { message: `dying, key ${key}` } }, { status: 500 });
      }
      forwarded++;
    }
    const target = real.url.replace(/\/v1$/, "") + path;
    const answer = await fetch(target, {
      method: request.method,
      headers: { "content-type": "application/json" },
      body: request.method === "POST" ? await request.text() : undefined,
    });
    return new Response(await answer.text(), { status: answer.status });
  });
  Deno.env.set("QB_TEST_OPENAI_KEY", key);
  try {
    const suiteText = `name: openai_resume
models:
  - { id: micro, path: ${micro} }
engines:
  proxy: { kind: openai, base_url: "${proxy.url}", model: micro, api_key_env: QB_TEST_OPENAI_KEY, retries: 1, retry_base_ms: 10, max_concurrency: 1 }
methods: [none]
formats: [f32]
backends: [proxy]
tasks:
  - { task: perplexity, dataset: ${root}fixtures/datasets/heldout.txt, context: 64, max_tokens: 512 }
`;
    const suite = await parseSuite(suiteText, join(dir, "suite.yaml"));
    const run = () =>
      runSuite(suite, { runId: "t", cacheDir: join(dir, "cache"), jobs: 1, quiet: true });
    const first = await run();
    const failed = first.rows.find((r) => r.task === "perplexity")!;
    assert.deepEqual(failed.status, "failed");
    assert.match(failed.detail, /HTTP 500: dying, key \*\*\*/);
    const before = forwarded;
    assert.deepEqual(before, 3);
    failFrom = Infinity;
    const second = await run();
    const ok = second.rows.find((r) => r.metric === "ppl")!;
    assert.deepEqual(ok.status, "ok", ok.detail);
    // 512 tokens in windows of 64: 8 windows, 3 of them answered before the failure.
    assert.deepEqual(forwarded - before, 8 - 3);
    for await (const entry of walk(dir)) {
      const text = await Deno.readTextFile(entry);
      assert.ok(!text.includes(key), `the API key is in ${entry}`);
    }
    assert.ok(!JSON.stringify(first).includes(key) && !JSON.stringify(second).includes(key));
  } finally {
    Deno.env.delete("QB_TEST_OPENAI_KEY");
    await proxy.close();
    await real.shutdown();
    inProcess.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

async function* walk(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory) yield* walk(path);
    else if (e.isFile) yield path;
  }
}

const window = { input: [1, 40, 41, 42], offset: 0, targets: [40, 41, 42, 43] };

Deno.test("openai engine: an unreachable server is a clear error", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const engine = new OpenAIEngine(await microModel(), options(`http://127.0.0.1:${port}/v1`));
  await assert.rejects(
    () => engine.loglikelihood([window]),
    (e) => is(e, `Cannot reach the OpenAI-compatible server at http://127.0.0.1:${port}/v1/models`),
  );
});

Deno.test("openai engine: a server answering 500 is retried, then a clear error", async () => {
  const server = misbehaving((r) =>
    new URL(r.url).pathname === "/v1/models"
      ? modelsList()
      : Response.json({ error: { message: "out of memory" } }, { status: 500 })
  );
  try {
    const engine = new OpenAIEngine(await microModel(), options(server.url));
    await assert.rejects(
      () => engine.loglikelihood([window]),
      (e) => is(e, "failed with HTTP 500: out of memory (after 2 attempts)"),
    );
    assert.deepEqual(server.hits(), 1 + 2);
  } finally {
    await server.close();
  }
});

Deno.test("openai engine: a truncated JSON body is a clear error", async () => {
  const server = misbehaving((r) =>
    new URL(r.url).pathname === "/v1/models"
      ? modelsList()
      : new Response(`{"id": "cmpl-1", "choices": [{"text": "`, {
        headers: { "content-type": "application/json" },
      })
  );
  try {
    const engine = new OpenAIEngine(await microModel(), options(server.url));
    await assert.rejects(
      () => engine.loglikelihood([window]),
      (e) => is(e, "answered with a body that is not a JSON object"),
    );
  } finally {
    await server.close();
  }
});

Deno.test("openai engine: a server that omits logprobs is a clear error", async () => {
  const server = misbehaving((r) =>
    new URL(r.url).pathname === "/v1/models" ? modelsList() : Response.json({
      id: "cmpl-1",
      object: "text_completion",
      choices: [{ index: 0, text: "x", logprobs: null, finish_reason: "length" }],
    })
  );
  try {
    const engine = new OpenAIEngine(await microModel(), options(server.url));
    await assert.rejects(
      () => engine.loglikelihood([window]),
      (e) => is(e, "The server gave no log-probabilities for the prompt"),
    );
  } finally {
    await server.close();
  }
});

Deno.test("openai engine: a model the server does not serve is a clear error", async () => {
  const model = await microModel();
  const inProcess = await InProcessEngine.load(model, "cpu");
  const server = serveEngine(inProcess, { modelName: "micro", port: 0 });
  try {
    const engine = new OpenAIEngine(model, options(server.url, { model: "llama-70b" }));
    await assert.rejects(
      () => engine.generateUntil([{ prompt: [1, 40], maxTokens: 2 }]),
      (e) => is(e, `does not serve model "llama-70b" (it serves: "micro")`),
    );
  } finally {
    await server.shutdown();
    inProcess.dispose();
  }
});

Deno.test("openai engine: a missing API key variable is a clear error", async () => {
  const model = await microModel();
  assert.throws(
    () =>
      new OpenAIEngine(model, options("http://127.0.0.1:1/v1", { apiKeyEnv: "QB_NO_SUCH_KEY" })),
    (e) => is(e, "The environment variable QB_NO_SUCH_KEY (api_key_env) is not set"),
  );
});

Deno.test("openai engine: echo + logprobs and vLLM's prompt_logprobs score as the engine does in process", async () => {
  const model = await microModel();
  const inProcess = await InProcessEngine.load(model, "cpu");
  const server = serveEngine(inProcess, { modelName: "micro", port: 0 });
  try {
    const text = "Once upon a time there was a little girl. She liked to play.";
    const requests = [
      { context: "Once upon a time", continuation: " there was a little girl" },
      { context: "She liked", continuation: " to play." },
    ];
    const expected = await inProcess.loglikelihood(requests);
    const [rolling] = await inProcess.loglikelihoodRolling([{ text, maxLength: 8 }]);
    for (const promptLogprobs of [false, true]) {
      const engine = new OpenAIEngine(model, options(server.url, { promptLogprobs }));
      const got = await engine.loglikelihood(requests);
      for (const [i, r] of got.entries()) {
        assert.deepEqual(
          r.tokenLogprobs,
          expected[i]!.tokenLogprobs,
          `prompt_logprobs ${promptLogprobs}`,
        );
        assert.equal(r.isGreedy, expected[i]!.isGreedy);
      }
      const [served] = await engine.loglikelihoodRolling([{ text, maxLength: 8 }]);
      assert.equal(served!.tokens, rolling!.tokens);
      assert.equal(served!.windows, rolling!.windows);
      assert.ok(Math.abs(served!.logprob - rolling!.logprob) < 1e-9);
    }
  } finally {
    await server.shutdown();
    inProcess.dispose();
  }
});

Deno.test("openai engine: a server that does not answer in time is a clear error", async () => {
  const server = misbehaving(async (r) => {
    if (new URL(r.url).pathname === "/v1/models") return modelsList();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    return Response.json({ choices: [] });
  });
  try {
    const engine = new OpenAIEngine(await microModel(), options(server.url, { timeoutMs: 100 }));
    await assert.rejects(
      () => engine.loglikelihood([window]),
      (e) => is(e, "(no answer within 0.1 s, after 2 attempts)"),
    );
  } finally {
    await server.close();
  }
});
