// k1 = fused[exp, reduce_sum, div] -> %6, f32[B,10]
@group(0) @binding(0) var<storage, read_write> v3: array<f32>;
@group(0) @binding(1) var<storage, read_write> v6: array<f32>;
struct Dims { B: u32 }
@group(0) @binding(2) var<uniform> u: Dims;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let i0 = (wid.y * nwg.x + wid.x) * 64u + lid;
  if (i0 >= u.B) { return; }
  var acc: f32 = 0f;
  for (var j = 0u; j < 10u; j++) {
    let e3 = exp(v3[(i0 * 10u + j)]);
    acc = acc + e3;
  }
  for (var j = 0u; j < 10u; j++) {
    let e7 = exp(v3[(i0 * 10u + j)]);
    v6[(i0 * 10u + j)] = (e7 / acc);
  }
}
