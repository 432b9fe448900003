#!/usr/bin/env bash
# Kiln on a lent GPU machine, in one call: unpack .gpu-kit (node scripts/gpu-kit.mjs, carried),
# find the GPU's Vulkan driver, then run the GPU test files and the bench against the WebGPU peers.
# Everything lands in $OUT (gpu.txt, suite.log, bench.md, bench.json); the last lines printed are
# the bench's table. Runs here too, on lavapipe, to check the kit: OUT=/tmp/gpu-out bash scripts/gpu-run.sh
#   KILN_GPU_SUITE_S (default 240) and KILN_GPU_BENCH_S (default 300) bound the two parts;
#   KILN_GPU_TESTS (test files) and KILN_GPU_BENCH_ARGS (bench options) replace the defaults.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-/tmp/kiln-gpu-out}
mkdir -p "$OUT"
kit=/tmp/kiln-gpu-kit
say() { echo "gpu-run: $*" | tee -a "$OUT/gpu.txt"; }

[ -f .gpu-kit/kit.tar.xz ] || { say "no .gpu-kit/kit.tar.xz: run node scripts/gpu-kit.mjs here and carry .gpu-kit"; exit 2; }
rm -rf "$kit" && mkdir -p "$kit"
if ! tar -xJf .gpu-kit/kit.tar.xz -C "$kit" 2>/dev/null; then
  # No xz on the machine: Python's tarfile reads it.
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' .gpu-kit/kit.tar.xz "$kit" || exit 2
fi
export PATH="$kit/bin:$PATH"
[ -e node_modules ] || ln -s "$kit/node_modules" node_modules

if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
  for f in "$kit"/debs/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done
  ldconfig 2>/dev/null
  say "Vulkan loader unpacked from the kit"
fi
if ! ls /usr/share/vulkan/icd.d/nvidia*.json /etc/vulkan/icd.d/nvidia*.json >/dev/null 2>&1; then
  icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
fi

{ nvidia-smi -L 2>&1 || echo "nvidia-smi: not found"; node --version; } | tee -a "$OUT/gpu.txt"
node --import tsx -e '
  const { acquireGpu, releaseGpu } = await import("./runtime/device.ts");
  const gpu = await acquireGpu();
  console.log(`adapter: ${gpu.adapter}; target ${gpu.target.name ?? JSON.stringify(gpu.target)}`);
  console.log(`maxStorageBufferBindingSize ${gpu.limits.maxStorageBufferBindingSize}; features ${[...gpu.features].sort().join(" ")}`);
  await releaseGpu();
' 2>&1 | tee -a "$OUT/gpu.txt"

tests=${KILN_GPU_TESTS:-$(cat "$kit/tests.txt")}
say "suite: $(echo $tests | wc -w) test files"
start=$SECONDS
NO_COLOR=1 timeout "${KILN_GPU_SUITE_S:-240}" node node_modules/vitest/vitest.mjs run --reporter=dot $tests > "$OUT/suite.log" 2>&1
suite=$?
say "suite: exit $suite in $((SECONDS - start)) s; $(grep -E '^ +(Test Files|Tests) ' "$OUT/suite.log" | tr -s ' ' | tr '\n' ';')"

start=$SECONDS
KILN_BENCH_PREBUILT="$kit/bench" KILN_BENCH_VERSIONS="$kit/bench/versions.json" timeout "${KILN_GPU_BENCH_S:-300}" \
  node --import tsx test/bench/run.ts ${KILN_GPU_BENCH_ARGS:---workloads W1,W2,W3,W5 --runners kiln,tfjs-webgpu,jax-webgpu --steps 20 --budget 20} \
  --json "$OUT/bench.json" > "$OUT/bench.md" 2> "$OUT/bench.log"
bench=$?
say "bench: exit $bench in $((SECONDS - start)) s"
cat "$OUT/bench.md"
exit $((suite || bench))
