// k1 = fused[add, log, mul] -> %6, f32[4,1]
// in place: %6 is stored over %2, read only at the element stored
@group(0) @binding(0) var<storage, read_write> v2: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let i0 = (wid.y * nwg.x + wid.x) * 64u + lid;
  if (i0 >= 4u) { return; }
  let e2 = (v2[i0] + 1f);
  let e3 = log(e2);
  v2[i0] = (e3 * v2[i0]);
}
