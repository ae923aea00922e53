// Bindings shared by the cache-write kernels (cache-write-quant.wgsl,
// cache-write-fp16.wgsl), so the host binds them all the same way (src/kernels/cache-write.ts).

struct WriteParams {
  num_tokens: u32,                 // N
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
  sign_bits: array<vec4<u32>, 2>,  // bit d set: element d is multiplied by −1 before rotating (int4 only)
}

@group(0) @binding(0) var<storage, read> new_k: array<f32>;          // [N, NUM_KV_HEADS, HEAD_DIM]
@group(0) @binding(1) var<storage, read> new_v: array<f32>;          // [N, NUM_KV_HEADS, HEAD_DIM]
@group(0) @binding(2) var<storage, read> slots: array<u32>;          // [N] page * PAGE_SIZE + offset
@group(0) @binding(3) var<storage, read_write> k_cache: array<u32>;  // [numPages * PAGE_WORDS], see layout.ts
@group(0) @binding(4) var<storage, read_write> v_cache: array<u32>;  // [numPages * PAGE_WORDS]
@group(0) @binding(5) var<uniform> params: WriteParams;

// Writes one word of the K (is_v false) or V cache.
fn store_cache_word(is_v: bool, index: u32, word: u32) {
  if (is_v) {
    v_cache[index] = word;
  } else {
    k_cache[index] = word;
  }
}
