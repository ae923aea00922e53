// The end of the subgroup and matrix decode kernels (after lib/decode-io.wgsl, lib/hadamard.wgsl and,
// with MERGE_IN_DISPATCH, lib/split-merge.wgsl). On entry, behind a barrier, rot_buf holds each of the
// workgroup's heads' Σ p·(scale·code + min), unnormalised (relative to the head's reference maximum),
// and head_ml[h] that (maximum·log2e, Σp). With one split the result is final: normalise, rotate V back
// when it was rotated (as the merge kernel would) and write `out`. With several splits, either write
// the partial and its (max, sum) for shaders/paged-decode-merge.wgsl, or (MERGE_IN_DISPATCH, the
// subgroup kernel) merge them here: see merge_in_dispatch. Contains barriers: call from
// workgroup-uniform control flow. The kernel declares: var<workgroup> head_ml: array<vec2<f32>, HEADS_PER_WG>;

// #if MERGE_IN_DISPATCH
// The last workgroup of a (sequence, head group) to finish merges every split's partial, in split
// order, in the same dispatch. WGSL orders memory between workgroups only through atomics on one
// location (barriers are workgroup-scoped, atomics relaxed: docs/design.md), so every partial word
// itself travels through an atomic: a word reads MERGE_EMPTY until its split's store has arrived, and
// the merging workgroup waits on each word it reads, not on an ordering the language does not give.
// The counter says only which workgroup is last: by then every other split has issued its stores, so
// the wait is for their arrival, never for a workgroup that has not run. The merger then puts
// MERGE_EMPTY back into every word it read and the counter to 0, so the next call starts alike.
// A word that has not arrived after MERGE_SPIN_LIMIT reads makes its output NaN (loud, never a stale
// value; not seen in practice).
const MERGE_EMPTY: u32 = 0xffffffffu;
const MERGE_SPIN_LIMIT: u32 = 1048576u;
var<private> merge_incomplete: bool = false;
var<workgroup> merge_is_last: u32;

fn merge_record_word(record: u32, i: u32) -> u32 {
  return record * (HEAD_DIM + 2u) + i;
}

// The word at `index` once its split's store has arrived (MERGE_EMPTY after MERGE_SPIN_LIMIT reads).
fn await_merge_word(index: u32) -> u32 {
  var word = atomicLoad(&merge_words[index]);
  for (var n = 0u; word == MERGE_EMPTY && n < MERGE_SPIN_LIMIT; n++) {
    word = atomicLoad(&merge_words[index]);
  }
  merge_incomplete = merge_incomplete || word == MERGE_EMPTY;
  return word;
}

// Where lib/split-merge.wgsl finds the partials: a block's words are all loaded before any is checked
// (one round of loads when they have arrived, as they almost always have); a word still MERGE_EMPTY
// is awaited alone. SPLIT_MERGE_BLOCK is the plan's split count rounded up (at least 4), so every
// pass of the merge reads its splits in one round.
fn load_ml_block(first: u32, s: u32, num_splits: u32) -> array<vec2<f32>, SPLIT_MERGE_BLOCK> {
  var words: array<vec2<u32>, SPLIT_MERGE_BLOCK>;
  for (var j = 0u; j < SPLIT_MERGE_BLOCK; j++) {  // unroll
    let record = first + min(s + j, num_splits - 1u);
    words[j] = vec2<u32>(atomicLoad(&merge_words[merge_record_word(record, HEAD_DIM)]), atomicLoad(&merge_words[merge_record_word(record, HEAD_DIM + 1u)]));
  }
  var ml: array<vec2<f32>, SPLIT_MERGE_BLOCK>;
  for (var j = 0u; j < SPLIT_MERGE_BLOCK; j++) {  // unroll
    let record = first + min(s + j, num_splits - 1u);
    if (words[j].x == MERGE_EMPTY) {
      words[j].x = await_merge_word(merge_record_word(record, HEAD_DIM));
    }
    if (words[j].y == MERGE_EMPTY) {
      words[j].y = await_merge_word(merge_record_word(record, HEAD_DIM + 1u));
    }
    ml[j] = select(vec2<f32>(NEG_HUGE, 0.0), bitcast<vec2<f32>>(words[j]), s + j < num_splits);
  }
  return ml;
}

fn load_acc_block(first: u32, s: u32, num_splits: u32, d: u32) -> array<f32, SPLIT_MERGE_BLOCK> {
  var words: array<u32, SPLIT_MERGE_BLOCK>;
  for (var j = 0u; j < SPLIT_MERGE_BLOCK; j++) {  // unroll
    words[j] = atomicLoad(&merge_words[merge_record_word(first + min(s + j, num_splits - 1u), d)]);
  }
  var acc: array<f32, SPLIT_MERGE_BLOCK>;
  for (var j = 0u; j < SPLIT_MERGE_BLOCK; j++) {  // unroll
    if (words[j] == MERGE_EMPTY) {
      words[j] = await_merge_word(merge_record_word(first + min(s + j, num_splits - 1u), d));
    }
    acc[j] = bitcast<f32>(words[j]);
  }
  return acc;
}

fn merge_in_dispatch(lid: u32, seq: u32, first_q_head: u32, split: u32) {
  let num_splits = params.num_splits;
  let first_row = seq * NUM_Q_HEADS + first_q_head;
  for (var i = lid; i < HEADS_PER_WG * HEAD_DIM; i += WORKGROUP_SIZE) {
    let record = (first_row + i / HEAD_DIM) * num_splits + split;
    atomicStore(&merge_words[merge_record_word(record, i % HEAD_DIM)], bitcast<u32>(rot_buf[i]));
  }
  if (lid < HEADS_PER_WG) {
    let record = (first_row + lid) * num_splits + split;
    atomicStore(&merge_words[merge_record_word(record, HEAD_DIM)], bitcast<u32>(head_ml[lid].x));
    atomicStore(&merge_words[merge_record_word(record, HEAD_DIM + 1u)], bitcast<u32>(head_ml[lid].y));
  }
  storageBarrier();  // the workgroup's stores are issued before it counts itself
  let counter = first_row / HEADS_PER_WG;
  if (lid == 0u) {
    merge_is_last = select(0u, 1u, atomicAdd(&merge_counters[counter], 1u) == num_splits - 1u);
  }
  if (workgroupUniformLoad(&merge_is_last) == 0u) {
    return;
  }
  merge_rows_into_rot_buf(lid, first_row, num_splits);
  if (merge_incomplete) {
    for (var i = lid; i < HEADS_PER_WG * HEAD_DIM; i += WORKGROUP_SIZE) {
      rot_buf[i] = bitcast<f32>(select(0u, 0x7fc00000u, merge_incomplete));  // NaN (a runtime value: a constant NaN does not compile)
    }
  }
  storageBarrier();  // every invocation has read the records before any is reset
  let first_word = first_row * num_splits * (HEAD_DIM + 2u);
  for (var i = lid; i < HEADS_PER_WG * num_splits * (HEAD_DIM + 2u); i += WORKGROUP_SIZE) {
    atomicStore(&merge_words[first_word + i], MERGE_EMPTY);
  }
  if (lid == 0u) {
    atomicStore(&merge_counters[counter], 0u);
  }
  workgroupBarrier();
  if (ROTATE_OUT == 1u) {
    unrotate_rows_in_workgroup(lid);
  }
  for (var i = lid; i < HEADS_PER_WG * HEAD_DIM; i += WORKGROUP_SIZE) {
    out[first_row * HEAD_DIM + i] = rot_buf[i];
  }
}
// #endif

fn write_decode_result(lid: u32, seq: u32, first_q_head: u32, split: u32) {
  let num_splits = params.num_splits;
  if (num_splits == 1u) {
    for (var i = lid; i < HEADS_PER_WG * HEAD_DIM; i += WORKGROUP_SIZE) {
      rot_buf[i] = rot_buf[i] / head_ml[i / HEAD_DIM].y;
    }
    if (ROTATE_OUT == 1u) {
      unrotate_rows_in_workgroup(lid);
    }
    for (var i = lid; i < HEADS_PER_WG * HEAD_DIM; i += WORKGROUP_SIZE) {
      out[(seq * NUM_Q_HEADS + first_q_head) * HEAD_DIM + i] = rot_buf[i];
    }
  } else {
// #if MERGE_IN_DISPATCH
    merge_in_dispatch(lid, seq, first_q_head, split);
// #else
    for (var i = lid; i < HEADS_PER_WG * HEAD_DIM; i += WORKGROUP_SIZE) {
      let head = first_q_head + i / HEAD_DIM;
      partial_acc[((seq * NUM_Q_HEADS + head) * num_splits + split) * HEAD_DIM + i % HEAD_DIM] = rot_buf[i];
    }
    if (lid < HEADS_PER_WG) {
      partial_ml[(seq * NUM_Q_HEADS + first_q_head + lid) * num_splits + split] = head_ml[lid];
    }
// #endif
  }
}
