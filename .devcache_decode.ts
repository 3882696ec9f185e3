import { loadModel } from "./harness/models/load.ts";
import { cpuBackend } from "./kernels/cpu/backend.ts";
const model = await loadModel({ id: "mini", path: "fixtures/models/mini" } as never);
const runner = await cpuBackend.load(model);
const t0 = performance.now();
for (let rep = 0; rep < 3; rep++) {
  runner.reset();
  await runner.forward([1, 2, 3, 4, 5, 6, 7, 8], 0);
  for (let p = 8; p < 136; p++) await runner.forward([p % 100 + 10], p);
}
console.log(((performance.now() - t0) / 1000).toFixed(3));
