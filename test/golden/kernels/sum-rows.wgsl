// k0 = reduce_sum[exp] -> %2, f32[B]
@group(0) @binding(0) var<storage, read_write> v0: array<f32>;
@group(0) @binding(1) var<storage, read_write> v2: array<f32>;
struct Dims { B: u32 }
@group(0) @binding(2) var<uniform> u: Dims;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let i0 = (wid.y * nwg.x + wid.x) * 64u + lid;
  if (i0 >= u.B) { return; }
  var acc: f32 = 0f;
  for (var j = 0u; j < 10u; j++) {
    let e3 = exp(v0[(i0 * 10u + j)]);
    acc = acc + e3;
  }
  v2[i0] = acc;
}
