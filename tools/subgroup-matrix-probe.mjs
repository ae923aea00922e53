// Phase costs of a tensor-core decode tile on this GPU (timing only): subgroup-matrix loads, MMAs,
// stores, workgroup barriers, staging stores, and a whole tile's chain (stage → barrier → 8 score
// loads + 16 MMAs → S to workgroup memory → barrier → the lanes' exp2 → barrier → P' load → 8 value
// loads + 16 MMAs), each in a loop of 2000 iterations, in grids of 132, 528 and 1056 workgroups of 4
// subgroups; `global_stage` / `chain_global` stage words loaded one tile ahead from scattered pages
// of a 256 MiB buffer, as the kernel does; `*_live_q` keep 16 query matrices live across the loop, as the
// kernel's MatrixState does. Prints ns per iteration (wall time of one dispatch / 2000, best of 4; the ~50 ns of the
// `empty` loop is submit overhead). Needs an adapter with shader-f16 and
// chromium-experimental-subgroup-matrix (Dawn opened with the project's unsafe toggles):
//   node tools/subgroup-matrix-probe.mjs
// Results and what they mean: docs/tuning.md ("Subgroup-matrix phase costs").
import { create, globals } from 'webgpu';
Object.assign(globalThis, globals);
const instance = create(['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia']);
const adapter = await instance.requestAdapter({ powerPreference: 'high-performance' });
const device = await adapter.requestDevice({ requiredFeatures: ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'], requiredLimits: { maxStorageBufferBindingSize: 16384 * 4096 * 4, maxBufferSize: 16384 * 4096 * 4 } });
device.addEventListener?.('uncapturederror', (e) => console.log('uncaptured', e.error?.message));
const rep = (n, f) => Array.from({ length: n }, (_, i) => f(i)).join('\n');
const header = `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium.subgroup_matrix_uniformity);
alias L = subgroup_matrix_left<f16, 16, 16>;
alias R = subgroup_matrix_right<f16, 8, 16>;
alias A = subgroup_matrix_result<f32, 8, 16>;
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> iters: vec4<u32>;
@group(0) @binding(2) var<storage, read> pool: array<u32>;  // 256 MiB of "cache words" (beyond the L2)
fn page_word(wg: u32, it: u32, k: u32, lane: u32) -> u32 {
  let page = (wg * 7919u + it * 104729u) % 16384u;  // a scattered page per tile, as a block table gives
  return page * 4096u + (k * 32u + lane) % 4096u;
}
var<workgroup> tile: array<f16, 16 * 136 + 128 * 24>;
var<workgroup> smem: array<f32, 16 * 8 * 9>;
var<workgroup> pmem: array<f16, 16 * 8>;
@compute @workgroup_size(128)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  tile[lid] = f16(lid % 7u) * 0.125h;
  if (lid < 128u) { pmem[lid] = 0.5h; }
  workgroupBarrier();
  let r = subgroupMatrixLoad<R, row_major>(&pmem, 0u, 8u);
${rep(16, (i) => `  let q${i} = subgroupMatrixLoad<R, col_major>(&tile, ${i * 128}u, 16u);`)}
  var acc = A();
  var words: array<u32, 8>;
${rep(8, (k) => `  words[${k}] = pool[page_word(wid.x, 0u, ${k}u, lane)];`)}
${rep(8, (i) => `  var o${i} = A();`)}
  for (var it = 0u; it < iters.x; it++) {
BODY
  }
  subgroupMatrixStore<row_major>(&smem, 0u, acc, 8u);
${rep(8, (i) => `  subgroupMatrixStore<row_major>(&smem, ${(i + 1) * 128}u, o${i}, 8u);`)}
  workgroupBarrier();
  if (lid == 0u) { var t = 0.0; for (var i = 0u; i < 9u; i++) { t += smem[i * 128u + 5u]; } out[wid.x] = t; }
}`;
const score8 = rep(8, (kb) => `    { let c = subgroupMatrixLoad<L, row_major>(&tile, ${kb * 16}u, 136u); acc = subgroupMatrixMultiplyAccumulate(c, r, acc); acc = subgroupMatrixMultiplyAccumulate(c, r, acc); }`);
const stage = rep(16, (k) => `    tile[(lane + ${k * 32}u) % 512u * 4u + it % 4u] = f16(it + ${k}u);`);
const values = rep(8, (ob) => `    { let v = subgroupMatrixLoad<L, col_major>(&tile, ${ob * 16}u, 136u); o${ob} = subgroupMatrixMultiplyAccumulate(v, p, o${ob}); o${ob} = subgroupMatrixMultiplyAccumulate(v, p, o${ob}); }`);
// the kernel's staging: 8 words per lane loaded one tile ahead from a scattered page, 2 codes per store
const globalStage = `${rep(8, (k) => `    tile[(lane + ${k * 32}u) % 512u * 4u] = f16(words[${k}] & 15u);\n    tile[(lane + ${k * 32}u) % 512u * 4u + 1u] = f16(words[${k}] >> 4u);`)}
${rep(8, (k) => `    words[${k}] = pool[page_word(wid.x, it + 1u, ${k}u, lane)];`)}`;
const score8q = rep(8, (kb) => `    { let c = subgroupMatrixLoad<L, row_major>(&tile, ${kb * 16}u, 136u); acc = subgroupMatrixMultiplyAccumulate(c, q${2 * kb}, acc); acc = subgroupMatrixMultiplyAccumulate(c, q${2 * kb + 1}, acc); }`);
// A tile's whole chain: staging, scores, S through workgroup memory, the lanes' exp2, P', values; with
// or without the barriers between the phases.
const chain = (staging, scores, barriers = true) => {
  const barrier = barriers ? '\n    workgroupBarrier();' : '';
  return `${staging}${barrier}
${scores}
    subgroupMatrixStore<row_major>(&smem, 0u, acc, 8u);${barrier}
    for (var j = 0u; j < 4u; j++) { let i = lane * 4u + j; pmem[i] = f16(exp2(smem[i] * 0.001)); }${barrier}
    let p = subgroupMatrixLoad<R, row_major>(&pmem, 0u, 8u);
${values}${barrier}`;
};
const VARIANTS = {
  empty: `    acc = acc;`,
  barrier: `    workgroupBarrier();`,
  mma1: `    acc = subgroupMatrixMultiplyAccumulate(subgroupMatrixLoad<L, row_major>(&tile, 0u, 136u), r, acc);`,
  mma1_noload: `    acc = subgroupMatrixMultiplyAccumulate(L(), r, acc);`,
  score8: score8,
  store_load: `    subgroupMatrixStore<row_major>(&smem, 0u, acc, 8u);\n    acc = subgroupMatrixMultiplyAccumulate(L(), r, subgroupMatrixLoad<A, row_major>(&smem, 0u, 8u));`,
  stage_barrier: `${stage}\n    workgroupBarrier();`,
  chain: chain(stage, score8),
  global_stage: `${globalStage}\n    workgroupBarrier();`,
  chain_global: chain(globalStage, score8),
  score8_live_q: score8q,
  chain_global_live_q: chain(globalStage, score8q),
  chain_no_barriers: chain(stage, score8, false),
};
const outBuf = device.createBuffer({ size: 4 * 4096, usage: GPUBufferUsage.STORAGE });
const pool = device.createBuffer({ size: 16384 * 4096 * 4, usage: GPUBufferUsage.STORAGE });
const uni = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
const ITERS = 2000;
device.queue.writeBuffer(uni, 0, new Uint32Array([ITERS, 0, 0, 0]));
for (const [name, body] of Object.entries(VARIANTS)) {
  try {
    device.pushErrorScope('validation');
    const module = device.createShaderModule({ code: header.replace('BODY', body) });
    const info = await module.getCompilationInfo();
    const errs = info.messages.filter((m) => m.type === 'error');
    if (errs.length) { console.log(name, 'compile error:', errs.map((m) => `${m.lineNum}: ${m.message}`).join(' | ')); await device.popErrorScope(); continue; }
    const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
    const bg = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: outBuf } }, { binding: 1, resource: { buffer: uni } }, { binding: 2, resource: { buffer: pool } }] });
    const err = await device.popErrorScope();
    if (err) { console.log(name, 'error', err.message); continue; }
    const results = [];
    for (const wgs of [132, 528, 1056]) {
      let best = Infinity;
      for (let rep = 0; rep < 4; rep++) {
        const enc = device.createCommandEncoder();
        const pass = enc.beginComputePass();
        pass.setPipeline(pipeline); pass.setBindGroup(0, bg); pass.dispatchWorkgroups(wgs);
        pass.end();
        const t0 = performance.now();
        device.queue.submit([enc.finish()]);
        await device.queue.onSubmittedWorkDone();
        best = Math.min(best, performance.now() - t0);
      }
      results.push(`${wgs} wg: ${(best * 1e6 / ITERS).toFixed(0)} ns/iter`);
    }
    console.log(name.padEnd(18), results.join(', '));
  } catch (e) { console.log(name, 'threw', e.message); }
}
process.exit(0);
