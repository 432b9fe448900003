// k0 = fused[matmul, add, relu] -> %5, f32[B,5]
@group(0) @binding(0) var<storage, read_write> v0: array<f32>;
@group(0) @binding(1) var<storage, read_write> v1: array<f32>;
@group(0) @binding(2) var<storage, read_write> v3: array<f32>;
@group(0) @binding(3) var<storage, read_write> v5: array<f32>;
struct Dims { B: u32 }
@group(0) @binding(4) var<uniform> u: Dims;

fn kiln_max(a: f32, b: f32) -> f32 {
  return select(max(a, b), a + b, kiln_is_nan(a) || kiln_is_nan(b));
}

fn kiln_is_nan(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

@compute @workgroup_size(1, 64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let m0 = ((wid.z % 16u * nwg.y + wid.y) * 64u + lid3.y) * 16u;
  let n0 = wid.x * 8u;
  if (m0 >= u.B || n0 >= 5u) { return; }
  let m1 = min(m0 + 1u, u.B - 1u);
  let m2 = min(m0 + 2u, u.B - 1u);
  let m3 = min(m0 + 3u, u.B - 1u);
  let m4 = min(m0 + 4u, u.B - 1u);
  let m5 = min(m0 + 5u, u.B - 1u);
  let m6 = min(m0 + 6u, u.B - 1u);
  let m7 = min(m0 + 7u, u.B - 1u);
  let m8 = min(m0 + 8u, u.B - 1u);
  let m9 = min(m0 + 9u, u.B - 1u);
  let m10 = min(m0 + 10u, u.B - 1u);
  let m11 = min(m0 + 11u, u.B - 1u);
  let m12 = min(m0 + 12u, u.B - 1u);
  let m13 = min(m0 + 13u, u.B - 1u);
  let m14 = min(m0 + 14u, u.B - 1u);
  let m15 = min(m0 + 15u, u.B - 1u);
  let n1 = min(n0 + 1u, 4u);
  let n2 = min(n0 + 2u, 4u);
  let n3 = min(n0 + 3u, 4u);
  let n4 = min(n0 + 4u, 4u);
  let n5 = min(n0 + 5u, 4u);
  let n6 = min(n0 + 6u, 4u);
  let n7 = min(n0 + 7u, 4u);
  var acc: array<vec4<f32>, 32>;
  for (var k = 0u; k < 8u; k++) {
    let a0 = v0[(m0 * 8u + k)];
    let a1 = v0[(m1 * 8u + k)];
    let a2 = v0[(m2 * 8u + k)];
    let a3 = v0[(m3 * 8u + k)];
    let a4 = v0[(m4 * 8u + k)];
    let a5 = v0[(m5 * 8u + k)];
    let a6 = v0[(m6 * 8u + k)];
    let a7 = v0[(m7 * 8u + k)];
    let a8 = v0[(m8 * 8u + k)];
    let a9 = v0[(m9 * 8u + k)];
    let a10 = v0[(m10 * 8u + k)];
    let a11 = v0[(m11 * 8u + k)];
    let a12 = v0[(m12 * 8u + k)];
    let a13 = v0[(m13 * 8u + k)];
    let a14 = v0[(m14 * 8u + k)];
    let a15 = v0[(m15 * 8u + k)];
    let b0 = vec4<f32>(v1[(k * 5u + n0)], v1[(k * 5u + n1)], v1[(k * 5u + n2)], v1[(k * 5u + n3)]);
    let b1 = vec4<f32>(v1[(k * 5u + n4)], v1[(k * 5u + n5)], v1[(k * 5u + n6)], v1[(k * 5u + n7)]);
    acc[0] += a0 * b0;
    acc[1] += a0 * b1;
    acc[2] += a1 * b0;
    acc[3] += a1 * b1;
    acc[4] += a2 * b0;
    acc[5] += a2 * b1;
    acc[6] += a3 * b0;
    acc[7] += a3 * b1;
    acc[8] += a4 * b0;
    acc[9] += a4 * b1;
    acc[10] += a5 * b0;
    acc[11] += a5 * b1;
    acc[12] += a6 * b0;
    acc[13] += a6 * b1;
    acc[14] += a7 * b0;
    acc[15] += a7 * b1;
    acc[16] += a8 * b0;
    acc[17] += a8 * b1;
    acc[18] += a9 * b0;
    acc[19] += a9 * b1;
    acc[20] += a10 * b0;
    acc[21] += a10 * b1;
    acc[22] += a11 * b0;
    acc[23] += a11 * b1;
    acc[24] += a12 * b0;
    acc[25] += a12 * b1;
    acc[26] += a13 * b0;
    acc[27] += a13 * b1;
    acc[28] += a14 * b0;
    acc[29] += a14 * b1;
    acc[30] += a15 * b0;
    acc[31] += a15 * b1;
  }
  for (var i = 0u; i < 16u; i++) {
    let sm = m0 + i;
    for (var j = 0u; j < 8u; j++) {
      let sn = n0 + j;
      if (sm < u.B && sn < 5u) {
        let e0 = (acc[i * 2u + j / 4u][j % 4u] + v3[sn]);
        v5[sm * 5u + sn] = kiln_max(e0, 0.0f);
      }
    }
  }
}
