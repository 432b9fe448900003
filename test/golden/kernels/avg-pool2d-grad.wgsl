// k2 = avg_pool2d_grad -> %3, f32[2,5,5,3]
@group(0) @binding(0) var<storage, read_write> v2: array<f32>;
@group(0) @binding(1) var<storage, read_write> v3: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let i0 = (wid.y * nwg.x + wid.x) * 64u + lid;
  if (i0 >= 150u) { return; }
  let c1 = i0 % 3u;
  let q2 = i0 / 3u;
  let c3 = q2 % 5u;
  let q4 = q2 / 5u;
  let c5 = q4 % 5u;
  let q6 = q4 / 5u;
  var acc = 0.0f;
  for (var wy = 0u; wy < 3u; wy++) {
    let t8 = c5 + 1u - wy;
    let o9 = t8 / 2u;
    if (t8 % 2u == 0u && o9 < 3u) {
      for (var wx = 0u; wx < 3u; wx++) {
        let t10 = c3 + 1u - wx;
        let o11 = t10 / 2u;
        if (t10 % 2u == 0u && o11 < 3u) {
          acc += v2[(((q6 * 3u + o9) * 3u + o11) * 3u + c1)] / f32((min(o9 * 2u + 3u, 6u) - max(o9 * 2u, 1u)) * (min(o11 * 2u + 3u, 6u) - max(o11 * 2u, 1u)));
        }
      }
    }
  }
  v3[i0] = acc;
}
