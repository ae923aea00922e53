// Tile maximum with subgroups: one atomicMax per subgroup instead of one per invocation. Needs
// `enable subgroups;`. No subgroup size or layout is assumed: any subgroup's elected lane publishes
// its subgroup's maximum. Must be called in uniform control flow.
fn publish_tile_max(g: u32, score: f32) {
  let subgroup_max = subgroupMax(score);
  if (subgroupElect()) {
    atomicMax(&tile_max_key[g], order_key(subgroup_max));
  }
}
