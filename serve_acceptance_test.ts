/**
 * `deno task serve` as a user runs it: a subprocess with the task's permissions over a fixture
 * cell, spoken to by the official `openai` npm client, then stopped by SIGINT.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import denoJson from "./deno.json" with { type: "json" };

const root = fileURLToPath(new URL(".", import.meta.url));

/** Starts `main.ts serve` as deno.json's task does; resolves with its URL once it listens. */
async function startServe(suite: string, filter: string) {
  const task = denoJson.tasks.serve.split(" ");
  const flags = task.filter((a) => a.startsWith("--allow-"));
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...flags,
      join(root, "main.ts"),
      "serve",
      suite,
      "--filter",
      filter,
      "--port",
      "0",
    ],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let log = "";
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    log += value;
    const url = log.match(/ at (http:\/\/127\.0\.0\.1:\d+\/v1)/)?.[1];
    if (url) {
      const rest = (async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return log;
          log += value;
        }
      })();
      return { child, url, log: () => rest };
    }
  }
  child.kill("SIGKILL");
  throw new Error(`serve did not start:\n${log}`);
}

Deno.test("serve: the openai npm client lists models, completes with logprobs, calls a tool, streams; SIGINT stops it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "serve_acceptance_" });
  const suite = join(dir, "suite.yaml");
  await Deno.writeTextFile(
    suite,
    `name: serve_acceptance
models:
  - { id: micro, path: ${join(root, "fixtures/models/micro")} }
methods: [none, rtn]
formats: [f32, { weights: int8 }]
backends: [cpu]
tasks:
  - { task: perplexity, dataset: ${join(root, "fixtures/datasets/heldout.txt")} }
exclude:
  - { method: none, format: "!f32" }
  - { method: rtn, format: f32 }
`,
  );
  const { child, url, log } = await startServe(suite, "micro/rtn/*");
  try {
    const client = new OpenAI({ baseURL: url, apiKey: "unused", maxRetries: 0 });
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), ["micro/rtn/int8/cpu"]);
    const model = models.data[0]!.id;

    // A completion with logprobs: echo, token log-probabilities, top alternatives, offsets.
    const completion = await client.completions.create({
      model,
      prompt: "Once upon a time",
      max_tokens: 4,
      echo: true,
      logprobs: 3,
      temperature: 0,
    });
    const choice = completion.choices[0]!;
    assert.ok(choice.text.startsWith("Once upon a time"));
    const lp = choice.logprobs!;
    const n = completion.usage!.prompt_tokens + completion.usage!.completion_tokens;
    assert.equal(lp.tokens!.length, n);
    assert.equal(lp.token_logprobs![0], null);
    for (let j = 1; j < n; j++) {
      const top = Object.values(lp.top_logprobs![j]!);
      assert.equal(top.length, 3);
      assert.ok(lp.token_logprobs![j]! <= Math.max(...top) + 1e-12);
      assert.ok(lp.token_logprobs![j]! < 0);
    }
    // Greedy decoding: every generated token is the most likely one.
    for (let j = completion.usage!.prompt_tokens; j < n; j++) {
      assert.equal(lp.token_logprobs![j], Math.max(...Object.values(lp.top_logprobs![j]!)));
    }
    assert.deepEqual(lp.text_offset, [...lp.text_offset!].sort((a, b) => a - b));

    // A chat completion with a tool call (the fixture model is trained to call tools).
    const tools: OpenAI.Chat.ChatCompletionTool[] = [{
      type: "function",
      function: {
        name: "search_invoice",
        description: "Search a invoice.",
        parameters: {
          type: "object",
          properties: {
            genre: { type: "integer", description: "The genre of the invoice." },
            language: { type: "string", description: "The language of the invoice." },
          },
          required: ["genre", "language"],
        },
      },
    }];
    const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{
      role: "user",
      content: 'Can you search a invoice with genre 4, language "Lagos"?',
    }];
    const chat = await client.chat.completions.create({
      model,
      messages,
      tools,
      max_tokens: 64,
      temperature: 0,
    });
    const call = chat.choices[0]!.message.tool_calls?.[0];
    assert.equal(chat.choices[0]!.finish_reason, "tool_calls");
    assert.ok(call && call.type === "function");
    assert.equal(call.function.name, "search_invoice");
    assert.deepEqual(JSON.parse(call.function.arguments), { genre: 4, language: "Lagos" });

    // The same chat streamed: the deltas add up to the same text and tool call.
    const stream = await client.chat.completions.create({
      model,
      messages,
      tools,
      max_tokens: 64,
      temperature: 0,
      stream: true,
    });
    let text = "";
    let finish: string | null = null;
    let streamedCall = "";
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      const delta = chunk.choices[0]!.delta;
      text += delta.content ?? "";
      streamedCall += delta.tool_calls?.[0]?.function?.name ?? "";
      finish = chunk.choices[0]!.finish_reason ?? finish;
    }
    assert.ok(chunks > 3);
    assert.equal(text, chat.choices[0]!.message.content);
    assert.equal(streamedCall, "search_invoice");
    assert.equal(finish, "tool_calls");

    // Sampling other than greedy is refused, saying so; so is a model it does not serve.
    await assert.rejects(
      () => client.completions.create({ model, prompt: "a", temperature: 0.7 }),
      (e) => e instanceof OpenAI.BadRequestError && /decodes greedily only/.test(e.message),
    );
    await assert.rejects(
      () => client.completions.create({ model: "gpt-4", prompt: "a" }),
      (e) => e instanceof OpenAI.NotFoundError && /does not exist/.test(e.message),
    );
  } finally {
    child.kill("SIGINT");
    const status = await child.status;
    const text = await log();
    await child.stdout.cancel();
    await Deno.remove(dir, { recursive: true });
    assert.equal(status.code, 0, text);
    assert.match(text, /Shutting down/);
  }
});
