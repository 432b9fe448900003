// k0 = max_pool2d -> %1, f32[2,3,3,3]
@group(0) @binding(0) var<storage, read_write> v0: array<f32>;
@group(0) @binding(1) var<storage, read_write> v1: array<f32>;

fn kiln_f32(bits: u32) -> f32 {
  return bitcast<f32>(bits);
}

fn kiln_max(a: f32, b: f32) -> f32 {
  return select(max(a, b), a + b, kiln_is_nan(a) || kiln_is_nan(b));
}

fn kiln_is_nan(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let i0 = (wid.y * nwg.x + wid.x) * 64u + lid;
  if (i0 >= 54u) { return; }
  let c1 = i0 % 3u;
  let q2 = i0 / 3u;
  let c3 = q2 % 3u;
  let q4 = q2 / 3u;
  let c5 = q4 % 3u;
  let q6 = q4 / 3u;
  var acc = kiln_f32(0xff800000u);
  for (var wy = 0u; wy < 2u; wy++) {
    let h8 = c5 * 2u + wy;
    if (h8 < 5u) {
      for (var wx = 0u; wx < 2u; wx++) {
        let w9 = c3 * 2u + wx;
        if (w9 < 5u) {
          acc = kiln_max(acc, v0[(((q6 * 5u + h8) * 5u + w9) * 3u + c1)]);
        }
      }
    }
  }
  v1[i0] = acc;
}
