// k0 = fused[matmul, add, relu] -> %5, f32[B,5]
@group(0) @binding(0) var<storage, read_write> v0: array<f32>;
@group(0) @binding(1) var<storage, read_write> v1: array<f32>;
@group(0) @binding(2) var<storage, read_write> v3: array<f32>;
@group(0) @binding(3) var<storage, read_write> v5: array<f32>;
struct Dims { B: u32 }
@group(0) @binding(4) var<uniform> u: Dims;
var<workgroup> tileA: array<f32, 1024>;
var<workgroup> tileB: array<f32, 1024>;

fn kiln_max(a: f32, b: f32) -> f32 {
  return select(max(a, b), a + b, kiln_is_nan(a) || kiln_is_nan(b));
}

fn kiln_is_nan(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let m0 = (wid.z % 16u * nwg.y + wid.y) * 64u;
  if (m0 >= u.B) { return; }
  let n0 = wid.x * 64u;
  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < 8u; k0 += 16u) {
    for (var r = 0u; r < 4u; r++) {
      let ld = lid + r * 256u;
      let am = m0 + ld / 16u;
      let ak = k0 + ld % 16u;
      var a = 0.0f;
      if (am < u.B && ak < 8u) {
        a = v0[(am * 8u + ak)];
      }
      tileA[ld % 16u * 64u + ld / 16u] = a;
      let bk = k0 + ld / 64u;
      let bn = n0 + ld % 64u;
      var b = 0.0f;
      if (bk < 8u && bn < 5u) {
        b = v1[(bk * 5u + bn)];
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
      if (sm < u.B && sn < 5u) {
        let e0 = (acc[i][j] + v3[sn]);
        v5[sm * 5u + sn] = kiln_max(e0, 0.0f);
      }
    }
  }
}
