#!/usr/bin/env bash
# Make WebGPU work on this machine and install the npm dependencies. Safe to run again.
#
# Kiln runs WGSL through Dawn (npm `webgpu`), which needs a Vulkan driver. Without a GPU that is
# Mesa's lavapipe, and Dawn rejects the Mesa 22 of Debian bookworm, so as root on bookworm this
# installs libvulkan1 + mesa-vulkan-drivers 25 from bookworm-backports. Where Mesa >= 25 or a
# vendor's Vulkan driver (e.g. NVIDIA) is already there, the driver step does nothing.
#
# The browser tests (test/runtime/browser.test.ts) run WebGPU pages in headless Chromium; as root
# with apt, a missing Chromium is installed from Debian (`chromium`).
#
#   KILN_SKIP_NPM=1  skip `npm ci`
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "setup: $*"; }
die() { echo "setup: error: $*" >&2; exit 1; }

MIN_MESA=25
BACKPORTS_LIST=/etc/apt/sources.list.d/bookworm-backports.sources
BACKPORTS_SOURCE="Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
INSTALL_CMD="DEBIAN_FRONTEND=noninteractive apt-get install -y -t bookworm-backports libvulkan1 mesa-vulkan-drivers"

has_loader() {
  local ldconfig
  ldconfig=$(command -v ldconfig || echo /sbin/ldconfig)
  "$ldconfig" -p 2>/dev/null | grep -q 'libvulkan\.so\.1 '
}

# Major version of the installed mesa-vulkan-drivers, or 0.
mesa_major() {
  local line version
  line=$(dpkg-query -W -f='${db:Status-Status} ${Version}' mesa-vulkan-drivers 2>/dev/null) || { echo 0; return; }
  [[ $line == installed\ * ]] || { echo 0; return; }
  version=${line#installed }
  version=${version#*:}          # drop an epoch
  echo "${version%%.*}"
}

# A Vulkan ICD that Mesa does not ship, e.g. nvidia_icd.json from the GPU vendor's driver.
has_vendor_icd() {
  local f
  for f in /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json; do
    [[ -e $f ]] || continue
    dpkg-query -S "$f" 2>/dev/null | grep -q '^mesa-vulkan-drivers' || return 0
  done
  return 1
}

driver_ok() {
  has_loader && { (( $(mesa_major) >= MIN_MESA )) || has_vendor_icd; }
}

print_manual_steps() {
  cat >&2 <<EOF
setup: Dawn needs a Vulkan driver: mesa-vulkan-drivers >= $MIN_MESA (installed: $(mesa_major)) or your GPU's.
On Debian bookworm, as root:
  cat > $BACKPORTS_LIST <<'END'
$BACKPORTS_SOURCE
END
  apt-get update
  $INSTALL_CMD
or simply: sudo bash runtime/setup.sh
EOF
}

install_driver() {
  local codename=""
  [[ -r /etc/os-release ]] && codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [[ $codename == bookworm ]] || die "no usable Vulkan driver, and this is not Debian bookworm ($codename): install libvulkan1 and mesa-vulkan-drivers >= $MIN_MESA (or your GPU's Vulkan driver) yourself"
  if ! grep -Eqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; then
    say "adding $BACKPORTS_LIST"
    printf '%s\n' "$BACKPORTS_SOURCE" > "$BACKPORTS_LIST"
  fi
  say "installing libvulkan1 and mesa-vulkan-drivers from bookworm-backports"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports libvulkan1 mesa-vulkan-drivers
  driver_ok || die "installed, but still no libvulkan.so.1 with mesa-vulkan-drivers >= $MIN_MESA"
}

setup_driver() {
  if driver_ok; then
    say "Vulkan driver ok (mesa-vulkan-drivers $(mesa_major).x$(has_vendor_icd && echo ', vendor ICD present'))"
    return
  fi
  command -v dpkg-query >/dev/null && command -v apt-get >/dev/null \
    || die "no usable Vulkan driver and no apt: install a Vulkan loader (libvulkan.so.1) and Mesa >= $MIN_MESA or your GPU's driver"
  if (( EUID != 0 )); then
    print_manual_steps
    exit 1
  fi
  install_driver
}

# Chromium for the browser tests, found the way test/helpers/browser.ts finds it.
find_chromium() {
  [[ -n ${KILN_CHROMIUM:-} ]] && { echo "$KILN_CHROMIUM"; return; }
  command -v chromium || command -v chromium-browser || command -v google-chrome-stable || command -v google-chrome
}

setup_chromium() {
  local bin
  if bin=$(find_chromium); then
    say "Chromium ok: $("$bin" --version 2>/dev/null || echo "$bin")"
    return
  fi
  if (( EUID != 0 )) || ! command -v apt-get >/dev/null; then
    say "warning: no Chromium, so the browser tests will be skipped; install it (Debian: sudo apt-get install chromium) or set KILN_CHROMIUM"
    return
  fi
  say "installing chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
  bin=$(find_chromium) || die "installed chromium, but no chromium on PATH"
  say "Chromium: $("$bin" --version 2>/dev/null)"
}

setup_npm() {
  if [[ ${KILN_SKIP_NPM:-} == 1 ]]; then
    say "KILN_SKIP_NPM=1: skipping npm ci"
    return
  fi
  # npm writes node_modules/.package-lock.json on every install; not older than the lockfile = current.
  local stamp=node_modules/.package-lock.json
  if [[ -f $stamp && ! package-lock.json -nt $stamp ]]; then
    say "node_modules up to date"
    return
  fi
  say "npm ci"
  # onnxruntime-node's install script would fetch CUDA extras from api.nuget.org (unreachable
  # here; its CPU binaries ship in the package): its own switch skips that (.npmrc says so too).
  ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
}

check_node() {
  command -v node >/dev/null || die "node not found: Kiln needs Node >= 20"
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  (( major >= 20 )) || die "Node $(node --version) is too old: Kiln needs Node >= 20"
}

check_adapter() {
  local name log
  log=$(mktemp)
  # Dawn prints limit warnings on stderr; show them only if no adapter comes back.
  name=$(node --input-type=module -e '
    import { create } from "webgpu";
    const adapter = await create([]).requestAdapter();
    if (!adapter) { console.error("no WebGPU adapter"); process.exit(1); }
    const i = adapter.info;
    console.log(`${i.description || i.device} [${[i.vendor, i.architecture].filter(Boolean).join(" ")}]`);
    process.exit(0);
  ' 2>"$log") || { cat "$log" >&2; rm -f "$log"; die "Dawn found no WebGPU adapter; check the Vulkan driver with: vulkaninfo --summary"; }
  rm -f "$log"
  say "WebGPU adapter: $name"
}

if [[ -z ${XDG_RUNTIME_DIR:-} ]]; then  # unset, Dawn's Vulkan loader warns on every start
  export XDG_RUNTIME_DIR="/tmp/xdg-$(id -u)"
  mkdir -p -m 700 "$XDG_RUNTIME_DIR"
fi

check_node
setup_driver
setup_chromium
setup_npm
check_adapter
say "done"
