// k0 = add -> %2, f32[B,10] @ codegen.test.ts
// in place: %2 is stored over %0, read only at the element stored
@group(0) @binding(0) var<storage, read_write> v1: array<f32>;
@group(0) @binding(1) var<storage, read_write> v0: array<f32>;
struct Dims { B: u32 }
@group(0) @binding(2) var<uniform> u: Dims;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let i0 = (wid.y * nwg.x + wid.x) * 64u + lid;
  if (i0 >= (u.B * 10u)) { return; }
  let c1 = i0 % 10u;
  v0[i0] = (v0[i0] + v1[c1]);
}
