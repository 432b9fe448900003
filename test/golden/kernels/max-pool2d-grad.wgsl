// k2 = max_pool2d_grad -> %3, f32[2,5,5,3]
@group(0) @binding(0) var<storage, read_write> v2: array<f32>;
@group(0) @binding(1) var<storage, read_write> v0: array<f32>;
@group(0) @binding(2) var<storage, read_write> v3: array<f32>;

fn kiln_f32(bits: u32) -> f32 {
  return bitcast<f32>(bits);
}

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
  for (var wy = 0u; wy < 2u; wy++) {
    let t8 = c5 - wy;
    let o9 = t8 / 2u;
    if (t8 % 2u == 0u && o9 < 3u) {
      for (var wx = 0u; wx < 2u; wx++) {
        let t10 = c3 - wx;
        let o11 = t10 / 2u;
        if (t10 % 2u == 0u && o11 < 3u) {
          var m = kiln_f32(0xff800000u);
          var fy = 0u;
          var fx = 0u;
          var found = false;
          for (var py = 0u; py < 2u; py++) {
            let h12 = o9 * 2u + py;
            if (h12 < 5u) {
              for (var px = 0u; px < 2u; px++) {
                let w13 = o11 * 2u + px;
                if (w13 < 5u) {
                  let v14 = v0[(((q6 * 5u + h12) * 5u + w13) * 3u + c1)];
                  if (!found || v14 > m) {
                    m = v14;
                    fy = h12;
                    fx = w13;
                    found = true;
                  }
                }
              }
            }
          }
          if (fy == c5 && fx == c3) { acc += v2[(((q6 * 3u + o9) * 3u + o11) * 3u + c1)]; }
        }
      }
    }
  }
  v3[i0] = acc;
}
