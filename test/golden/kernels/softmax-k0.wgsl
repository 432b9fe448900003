// k0 = fused[reduce_max, stop_gradient, sub] -> %3, f32[B,10]
@group(0) @binding(0) var<storage, read_write> v0: array<f32>;
@group(0) @binding(1) var<storage, read_write> v3: array<f32>;
struct Dims { B: u32 }
@group(0) @binding(2) var<uniform> u: Dims;

fn is_nan(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn nan_max(a: f32, b: f32) -> f32 {
  if (is_nan(a)) { return a; }
  if (is_nan(b)) { return b; }
  return max(a, b);
}

fn kiln_f32(bits: u32) -> f32 {
  return bitcast<f32>(bits);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let i0 = (wid.y * nwg.x + wid.x) * 64u + lid;
  if (i0 >= u.B) { return; }
  var acc: f32 = kiln_f32(0xff800000u);
  for (var j = 0u; j < 10u; j++) {
    let x3 = v0[(i0 * 10u + j)];
    acc = nan_max(acc, x3);
  }
  for (var j = 0u; j < 10u; j++) {
    v3[(i0 * 10u + j)] = (v0[(i0 * 10u + j)] - acc);
  }
}
