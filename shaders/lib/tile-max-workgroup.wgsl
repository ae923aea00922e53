// Tile maximum without subgroups (the fallback): every invocation publishes its own score.
fn publish_tile_max(g: u32, score: f32) {
  atomicMax(&tile_max_key[g], order_key(score));
}
