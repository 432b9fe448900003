// k2 = conv2d_grad_input -> %4, f32[2,6,6,3]
@group(0) @binding(0) var<storage, read_write> v3: array<f32>;
@group(0) @binding(1) var<storage, read_write> v1: array<f32>;
@group(0) @binding(2) var<storage, read_write> v4: array<f32>;
var<workgroup> tileA: array<f32, 1024>;
var<workgroup> tileB: array<f32, 1024>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let m0 = wid.y * 64u;
  let n0 = wid.x * 64u;
  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < 36u; k0 += 16u) {
    for (var r = 0u; r < 4u; r++) {
      let ld = lid + r * 256u;
      let am = m0 + ld / 16u;
      let ak = k0 + ld % 16u;
      var a = 0.0f;
      if (am < 72u && ak < 36u) {
        let p0 = am % 6u;
        let q1 = am / 6u;
        let p2 = q1 % 6u;
        let q3 = q1 / 6u;
        let r5 = ak % 4u;
        let q6 = ak / 4u;
        let r7 = q6 % 3u;
        let q8 = q6 / 3u;
        let t10 = p2 + 1u - q8;
        let o11 = t10 / 2u;
        let t12 = p0 + 1u - r7;
        let o13 = t12 / 2u;
        a = select(0.0f, v3[(((q3 * 3u + min(o11, 2u)) * 3u + min(o13, 2u)) * 4u + r5)], t10 % 2u == 0u && o11 < 3u && t12 % 2u == 0u && o13 < 3u);
      }
      tileA[ld % 16u * 64u + ld / 16u] = a;
      let bk = k0 + ld / 64u;
      let bn = n0 + ld % 64u;
      var b = 0.0f;
      if (bk < 36u && bn < 3u) {
        let r14 = bk % 4u;
        let q15 = bk / 4u;
        let r16 = q15 % 3u;
        let q17 = q15 / 3u;
        b = v1[(((q17 * 3u + r16) * 3u + bn) * 4u + r14)];
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
      if (sm < 72u && sn < 3u) {
        v4[sm * 3u + sn] = acc[i][j];
      }
    }
  }
}
