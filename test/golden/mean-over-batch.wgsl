// k0 = reduce_mean -> %1, f32[10]
@group(0) @binding(0) var<storage, read_write> v0: array<f32>;
@group(0) @binding(1) var<storage, read_write> v1: array<f32>;
struct Dims { B: u32 }
@group(0) @binding(2) var<uniform> u: Dims;
var<workgroup> acc_wg: array<f32, 256>;

fn kiln_f32(bits: u32) -> f32 {
  return bitcast<f32>(bits);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let o0 = wid.y * nwg.x + wid.x;
  if (o0 >= 10u) { return; }
  var acc: f32 = 0f;
  for (var j = lid; j < u.B; j += 256u) {
    let x3 = v0[(j * 10u + o0)];
    acc = acc + x3;
  }
  acc_wg[lid] = acc;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s) {
      acc_wg[lid] = acc_wg[lid] + acc_wg[lid + s];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    v1[o0] = select(acc_wg[0] / f32(u.B), kiln_f32(0x7fc00000u), u.B == 0u);
  }
}
