import assert from "node:assert/strict";
import { parseHfConfig } from "./config.ts";
import { ConfigError, UnsupportedModelError } from "../errors.ts";

const base = {
  model_type: "llama",
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 8,
  num_key_value_heads: 2,
  vocab_size: 100,
  max_position_embeddings: 4096,
  rms_norm_eps: 1e-5,
};

Deno.test("hf config: transformers 4.x and 5.x RoPE keys read alike", () => {
  const v4 = parseHfConfig({
    ...base,
    rope_theta: 500000,
    rope_scaling: {
      type: "llama3",
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    },
  }, "c.json");
  const v5 = parseHfConfig({
    ...base,
    rope_parameters: {
      rope_type: "llama3",
      rope_theta: 500000,
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    },
  }, "c.json");
  assert.deepEqual(v4, v5);
  assert.equal(v4.config.ropeTheta, 500000);
  assert.equal(v4.config.headDim, 8);
  assert.equal(v4.config.ropeStyle, "half");
  assert.deepEqual(v4.config.ropeScaling, {
    type: "llama3",
    factor: 8,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositions: 8192,
  });
  assert.equal(
    parseHfConfig({ ...base, rope_scaling: null }, "c.json").config.ropeScaling,
    undefined,
  );
});

Deno.test("hf config: per-architecture biases, q/k norms and windows", () => {
  const qwen2 = parseHfConfig({ ...base, model_type: "qwen2", tie_word_embeddings: true }, "c");
  assert.deepEqual([qwen2.qkvBias, qwen2.outputBias, qwen2.qkNorm, qwen2.tiedEmbeddings], [
    true,
    false,
    false,
    true,
  ]);
  const qwen3 = parseHfConfig({ ...base, model_type: "qwen3", head_dim: 32 }, "c");
  assert.deepEqual([qwen3.qkvBias, qwen3.qkNorm, qwen3.config.headDim], [false, true, 32]);
  const llama = parseHfConfig({ ...base, attention_bias: true }, "c");
  assert.deepEqual([llama.qkvBias, llama.outputBias], [true, true]);
  // Full attention is exact only within Mistral's sliding window.
  const mistral = parseHfConfig({ ...base, model_type: "mistral", sliding_window: 1024 }, "c");
  assert.equal(mistral.config.maxSeqLen, 1024);
});

Deno.test("hf config: what cannot run is a named error quoting the value", () => {
  const cases: [
    Record<string, unknown>,
    typeof ConfigError | typeof UnsupportedModelError,
    RegExp,
  ][] = [
    [{ model_type: "gemma" }, UnsupportedModelError, /model_type "gemma"/],
    [{ hidden_act: "gelu" }, UnsupportedModelError, /hidden_act "gelu"/],
    [{ mlp_bias: true }, UnsupportedModelError, /mlp_bias/],
    [{ partial_rotary_factor: 0.5 }, UnsupportedModelError, /partial_rotary_factor 0.5/],
    [{ rope_scaling: { rope_type: "yarn", factor: 4 } }, UnsupportedModelError, /rope type "yarn"/],
    [{ rope_scaling: { rope_type: "linear" } }, ConfigError, /needs "factor"/],
    [{ num_key_value_heads: 3 }, ConfigError, /not a multiple of num_key_value_heads 3/],
    [{ hidden_size: -1 }, ConfigError, /"hidden_size" is -1/],
    [{ vocab_size: "100" }, ConfigError, /"vocab_size" is "100"/],
  ];
  for (const [patch, type, pattern] of cases) {
    assert.throws(() => parseHfConfig({ ...base, ...patch }, "c.json"), (e: unknown) => {
      assert.ok(e instanceof type, `${JSON.stringify(patch)}: ${(e as Error).name}`);
      assert.match((e as Error).message, /^c\.json: /);
      assert.match((e as Error).message, pattern);
      return true;
    });
  }
});
