// Read-bandwidth probe: the roofline that decode kernels are measured against.
//
// Streams a buffer of vec4<u32> once, read-only: every invocation walks the buffer with a grid
// stride (consecutive invocations read consecutive 16-byte vectors, so each wave reads long
// coalesced runs) and adds what it read into a wrapping u32 sum. One sum per workgroup is written
// so the compiler cannot drop the loads, and the host can check the arithmetic: the sum of all
// outputs equals the wrapping sum of every u32 of the input.
//
// Specialised by the host (src/kernels/bandwidth-probe.ts) with:
//   WORKGROUP_SIZE  invocations per workgroup

@group(0) @binding(0) var<storage, read> source: array<vec4<u32>>;        // [numVec4] data to stream
@group(0) @binding(1) var<storage, read_write> sums: array<u32>;           // [numWorkgroups] wrapping sums
@group(0) @binding(2) var<uniform> params: ProbeParams;

struct ProbeParams {
  num_vec4: u32,        // length of `source`
  total_threads: u32,   // WORKGROUP_SIZE × number of workgroups
}

var<workgroup> partial: array<u32, WORKGROUP_SIZE>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let thread = gid.x + gid.y * nwg.x * WORKGROUP_SIZE;
  var acc = vec4<u32>(0u);
  for (var i = thread; i < params.num_vec4; i += params.total_threads) {
    acc += source[i];
  }
  partial[lid] = acc.x + acc.y + acc.z + acc.w;
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      partial[lid] += partial[lid + stride];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    sums[wid.x + wid.y * nwg.x] = partial[0];
  }
}
