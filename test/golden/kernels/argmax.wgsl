// k0 = argmax -> %1, i32[4]
@group(0) @binding(0) var<storage, read_write> v0: array<f32>;
@group(0) @binding(1) var<storage, read_write> v1: array<i32>;

fn is_nan(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn beats(x: f32, y: f32) -> bool {
  return (is_nan(x) && !is_nan(y)) || x > y;
}

fn ties(x: f32, y: f32) -> bool {
  return x == y || (is_nan(x) && is_nan(y));
}

fn kiln_f32(bits: u32) -> f32 {
  return bitcast<f32>(bits);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let i0 = (wid.y * nwg.x + wid.x) * 64u + lid;
  if (i0 >= 4u) { return; }
  var best: f32 = kiln_f32(0xff800000u);
  var at: u32 = 0u;
  for (var j = 0u; j < 10u; j++) {
    let x3 = v0[(i0 * 10u + j)];
    if (beats(x3, best)) { best = x3; at = j; }
  }
  v1[i0] = i32(at);
}
