// k3 = conv2d_grad_filter -> %5, f32[3,3,3,4]
@group(0) @binding(0) var<storage, read_write> v0: array<f32>;
@group(0) @binding(1) var<storage, read_write> v3: array<f32>;
@group(0) @binding(2) var<storage, read_write> v5: array<f32>;
var<workgroup> tileA: array<f32, 1024>;
var<workgroup> tileB: array<f32, 1024>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let m0 = wid.y * 64u;
  let n0 = wid.x * 64u;
  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < 18u; k0 += 16u) {
    for (var r = 0u; r < 4u; r++) {
      let ld = lid + r * 256u;
      let am = m0 + ld / 16u;
      let ak = k0 + ld % 16u;
      var a = 0.0f;
      if (am < 27u && ak < 18u) {
        let r0 = am % 3u;
        let q1 = am / 3u;
        let r2 = q1 % 3u;
        let q3 = q1 / 3u;
        let p5 = ak % 3u;
        let q6 = ak / 3u;
        let p7 = q6 % 3u;
        let q8 = q6 / 3u;
        let h10 = p7 * 2u + q3 - 1u;
        let w11 = p5 * 2u + r2 - 1u;
        a = select(0.0f, v0[(((q8 * 6u + min(h10, 5u)) * 6u + min(w11, 5u)) * 3u + r0)], h10 < 6u && w11 < 6u);
      }
      tileA[ld % 16u * 64u + ld / 16u] = a;
      let bk = k0 + ld / 64u;
      let bn = n0 + ld % 64u;
      var b = 0.0f;
      if (bk < 18u && bn < 4u) {
        b = v3[(bk * 4u + bn)];
      }
      tileB[ld] = b;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk++) {
      let bv = vec4(tileB[kk * 64u + lid3.x], tileB[kk * 64u + lid3.x + 16u], tileB[kk * 64u + lid3.x + 32u], tileB[kk * 64u + lid3.x + 48u]);
      acc[0] += tileA[kk * 64u + lid3.y] * bv;
      acc[1] += tileA[kk * 64u + lid3.y + 16u] * bv;
      acc[2] += tileA[kk * 64u + lid3.y + 32u] * bv;
      acc[3] += tileA[kk * 64u + lid3.y + 48u] * bv;
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let sm = m0 + lid3.y + i * 16u;
    for (var j = 0u; j < 4u; j++) {
      let sn = n0 + lid3.x + j * 16u;
      if (sm < 27u && sn < 4u) {
        v5[sm * 4u + sn] = acc[i][j];
      }
    }
  }
}
