// k0 = fused[mul, sub] -> %4, f32[4,3]
// in place: %4 is stored over %0, read only at the element stored
@group(0) @binding(0) var<storage, read_write> v1: array<f32>;
@group(0) @binding(1) var<storage, read_write> v0: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let i0 = (wid.y * nwg.x + wid.x) * 64u + lid;
  if (i0 >= 12u) { return; }
  let e4 = (v1[i0] * 0.10000000149011612f);
  v0[i0] = (v0[i0] - e4);
}
