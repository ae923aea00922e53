// Block-diagonal Walsh–Hadamard butterflies over a row held by a token's LANES_PER_TOKEN lanes in the
// subgroup decode kernel (lane l holds channels [l·C, l·C + C), C = CHANNELS_PER_LANE): no workgroup
// memory and no barrier. The stages inside a lane (half < LANE_BLOCK = min(C, B)) run in registers, the
// others (half = C, 2C, … < B: a block spans BLOCK_LANES = B / LANE_BLOCK lanes) exchange values with
// subgroupShuffleXor. The same butterflies in the same order (half = 1, 2, 4, …) as the cache write's
// hadamard_in_lane + hadamard_rows_in_workgroup (lib/hadamard.wgsl), so the same bits. Needs
// C % B == 0 or B % C == 0 (LANE_HADAMARD; the host keeps the workgroup-memory rotation otherwise) and
// subgroup-uniform control flow. Unnormalised, like hadamard_rows_in_workgroup.
fn hadamard_lanes(x: array<f32, CHANNELS_PER_LANE>, lane: u32) -> array<f32, CHANNELS_PER_LANE> {
  var y = x;
  for (var half = 1u; half < LANE_BLOCK; half <<= 1u) {  // unroll
    for (var i = 0u; i < CHANNELS_PER_LANE; i++) {  // unroll
      if ((i & half) == 0u) {
        let j = min(i + half, CHANNELS_PER_LANE - 1u);  // = i + half here (the clamp keeps dead copies' indices in bounds)
        let a = y[i];
        let b = y[j];
        y[i] = a + b;
        y[j] = a - b;
      }
    }
  }
  for (var r = 1u; r < BLOCK_LANES; r <<= 1u) {  // unroll
    // lanes with bit r clear hold the pair's first element (a + b), the others its second (a − b)
    let second = (lane & r) != 0u;
    for (var i = 0u; i < CHANNELS_PER_LANE; i++) {  // unroll
      let other = subgroupShuffleXor(y[i], r);
      y[i] = select(y[i] + other, other - y[i], second);
    }
  }
  return y;
}

// This lane's channels of query head `head` of sequence `seq`, × the random signs and rotated like K
// (unnormalised) when ROTATE_Q: what load_queries leaves in rot_buf for these channels.
fn lane_query(seq: u32, head: u32, lane: u32) -> array<f32, CHANNELS_PER_LANE> {
  var x: array<f32, CHANNELS_PER_LANE>;
  let base = (seq * NUM_Q_HEADS + head) * HEAD_DIM + lane * CHANNELS_PER_LANE;
  for (var i = 0u; i < CHANNELS_PER_LANE; i++) {  // unroll
    x[i] = q[base + i];
    if (ROTATE_Q == 1u) {
      x[i] *= random_sign(lane * CHANNELS_PER_LANE + i);
    }
  }
  if (ROTATE_Q == 1u) {
    x = hadamard_lanes(x, lane);
  }
  return x;
}
