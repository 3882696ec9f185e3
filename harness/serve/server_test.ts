import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModelPath } from "../models/load.ts";
import { InProcessEngine } from "../engines/in_process.ts";
import type { Engine } from "../engines/engine.ts";
import { serveEngine } from "./server.ts";
import { parseChatRequest, parseCompletionRequest, ProtocolError } from "./openai_protocol.ts";

const micro = join(fileURLToPath(new URL("../../", import.meta.url)), "fixtures/models/micro");

async function withServer(
  maxQueue: number,
  body: (url: string, engine: InProcessEngine) => Promise<void>,
): Promise<void> {
  const engine = await InProcessEngine.load(await loadModelPath(micro), "cpu");
  const server = serveEngine(engine, { modelName: "micro", port: 0, maxQueue });
  try {
    await body(server.url, engine);
  } finally {
    await server.shutdown();
    engine.dispose();
  }
}

const post = (url: string, body: unknown) =>
  fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });

Deno.test("serve: requests beyond the queue are answered 429; the queued ones are answered in full", async () => {
  const engine = await InProcessEngine.load(await loadModelPath(micro), "cpu");
  // The real engine, its generation held until the gate opens, so the queue is full for sure.
  const gate = Promise.withResolvers<void>();
  const gated: Engine = {
    info: () => engine.info(),
    tokenize: (text) => engine.tokenize(text),
    detokenize: (ids) => engine.detokenize(ids),
    chat: (messages, tools) => engine.chat(messages, tools),
    loglikelihood: (r) => engine.loglikelihood(r),
    loglikelihoodRolling: (r) => engine.loglikelihoodRolling(r),
    generateUntil: async (r) => {
      await gate.promise;
      return await engine.generateUntil(r);
    },
    logits: (input) => engine.logits(input),
    timeGeneration: (r) => engine.timeGeneration(r),
    dispose: () => engine.dispose(),
  };
  const server = serveEngine(gated, { modelName: "micro", port: 0, maxQueue: 2 });
  try {
    const request = { model: "micro", prompt: "Once upon a time", max_tokens: 8 };
    const queued = [
      post(`${server.url}/completions`, request),
      post(`${server.url}/completions`, request),
    ];
    await new Promise((resolve) => setTimeout(resolve, 200));
    const busy = await post(`${server.url}/completions`, request);
    assert.equal(busy.status, 429);
    assert.equal(busy.headers.get("retry-after"), "1");
    assert.match((await busy.json()).error.message, /busy \(2 requests queued, at most 2\)/);
    gate.resolve();
    const answers = await Promise.all(queued);
    assert.deepEqual(answers.map((a) => a.status), [200, 200]);
    const texts = await Promise.all(answers.map(async (a) => (await a.json()).choices[0].text));
    assert.equal(texts[0], texts[1]);
    // Once the queue has drained, a request is served again.
    const again = await post(`${server.url}/completions`, request);
    assert.equal(again.status, 200);
    await again.body?.cancel();
  } finally {
    gate.resolve();
    await server.shutdown();
    engine.dispose();
  }
});

Deno.test("serve: completions echo the prompt's log-probabilities as the engine computes them", async () => {
  await withServer(4, async (url, engine) => {
    const ids = [engine.info().bosId, ...engine.tokenize("Once upon a time there was")];
    const answer = await (await post(`${url}/completions`, {
      model: "micro",
      prompt: ids,
      max_tokens: 0,
      echo: true,
      logprobs: 1,
      return_tokens_as_token_ids: true,
    })).json();
    const lp = answer.choices[0].logprobs;
    assert.deepEqual(lp.tokens, ids.map((id) => `token_id:${id}`));
    const [mine] = await engine.loglikelihood([{
      input: ids.slice(0, -1),
      offset: 0,
      targets: ids.slice(1),
    }]);
    assert.deepEqual(lp.token_logprobs.slice(1), mine!.tokenLogprobs);
    // `stop` strings end generation; the answer says which one.
    const stopped = await (await post(`${url}/completions`, {
      model: "micro",
      prompt: "Once upon a time",
      max_tokens: 40,
      stop: ["."],
    })).json();
    assert.ok(!stopped.choices[0].text.includes("."));
    if (stopped.choices[0].finish_reason === "stop" && stopped.choices[0].stop_reason !== null) {
      assert.equal(stopped.choices[0].stop_reason, ".");
    }
  });
});

Deno.test("serve: response_format json ends the answer after the first JSON value", async () => {
  await withServer(4, async (url) => {
    const answer = await (await post(`${url}/chat/completions`, {
      model: "micro",
      messages: [{ role: "user", content: 'Answer with JSON: {"name": string}. Name: Ada' }],
      response_format: { type: "json_object" },
      max_tokens: 80,
    })).json();
    const text: string = answer.choices[0].message.content;
    // Whatever the tiny model writes, nothing follows a complete JSON value.
    const start = text.search(/[{[]/);
    if (start >= 0) {
      try {
        JSON.parse(text.slice(start));
      } catch {
        assert.equal(answer.choices[0].finish_reason, "length", text);
      }
    }
  });
});

Deno.test("serve: bad requests are 400s that name the field", () => {
  const refused = (f: () => unknown, text: string) =>
    assert.throws(
      f,
      (e) => e instanceof ProtocolError && e.status === 400 && e.message.includes(text),
    );
  refused(() => parseCompletionRequest({ model: "m", prompt: "a", temperature: 1 }), "greedily");
  refused(() => parseCompletionRequest({ model: "m", prompt: "a", top_p: 0.9 }), '"top_p"');
  refused(() => parseCompletionRequest({ model: "m", prompt: "a", n: 2 }), '"n"');
  refused(() => parseCompletionRequest({ model: "m", prompt: {} }), '"prompt"');
  refused(() => parseCompletionRequest({ model: "m", prompt: "a", logprobs: 50 }), '"logprobs"');
  refused(() => parseCompletionRequest({ prompt: "a" }), '"model"');
  refused(() => parseChatRequest({ model: "m", messages: [] }), '"messages"');
  refused(
    () => parseChatRequest({ model: "m", messages: [{ role: "user" }], response_format: "json" }),
    "response_format",
  );
  const ok = parseCompletionRequest({ model: "m", prompt: [[1, 2, 3]], stop: "\n" });
  assert.deepEqual(ok.prompt, [1, 2, 3]);
  assert.deepEqual(ok.stop, ["\n"]);
  assert.equal(ok.maxTokens, 16);
});

Deno.test("serve: refused requests, streamed or not, do not hold a place in the queue", async () => {
  await withServer(1, async (url) => {
    for (const stream of [true, false, true]) {
      const refused = await post(`${url}/chat/completions`, {
        model: "gpt-4",
        messages: [{ role: "user", content: "Hi" }],
        stream,
      });
      assert.equal(refused.status, 404);
      assert.equal((await refused.json()).error.code, "model_not_found");
    }
    const streamed = await post(`${url}/chat/completions`, {
      model: "micro",
      messages: [{ role: "user", content: "Hi" }],
      max_tokens: 4,
      stream: true,
    });
    assert.equal(streamed.headers.get("content-type"), "text/event-stream");
    const events = (await streamed.text()).split("\n\n").filter((e) => e !== "");
    assert.equal(events.at(-1), "data: [DONE]");
    const ok = await post(`${url}/completions`, { model: "micro", prompt: "a", max_tokens: 1 });
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
  });
});
