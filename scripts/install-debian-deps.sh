#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages the test suites need, when missing (run as root):
#   chromium       headless browser for the page tests; also ships SwiftShader, the software Vulkan
#                  driver that WebGPU runs on when the machine has no GPU
#   libvulkan1     the Vulkan loader that Dawn (the `webgpu` npm package) loads
#   python3-numpy  for the independent numpy implementation in tools/ that checks our output
#   mesa-vulkan-drivers ≥ 25 (Debian bookworm: from bookworm-backports) for lavapipe, Mesa's CPU
#                  Vulkan driver, whose shader-f16 runs the f16 code of the tensor-core decode kernel
#                  (SwiftShader has no shader-f16); optional: the suites say what they did not run
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
missing=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1' || missing+=(libvulkan1)
/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1 || missing+=(python3-numpy)
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-debian-deps: chromium, libvulkan1 and python3-numpy are present"
else
  echo "install-debian-deps: installing ${missing[*]}"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# lavapipe with shader-f16: Mesa 25 (bookworm's own Mesa 22 is too old for Dawn's f16).
mesa_version() { dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true; }
if [ -f /usr/share/vulkan/icd.d/lvp_icd.json ] && dpkg --compare-versions "$(mesa_version)" ge 25; then
  echo "install-debian-deps: lavapipe (mesa-vulkan-drivers $(mesa_version)) is present"
  exit 0
fi
codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
if [ "$codename" = bookworm ]; then
  # the machine's own Debian mirror, suite bookworm-backports
  mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -E '^(URIs:|deb )' | grep -oE 'https?://[^ ]+/debian/?( |$)' | tr -d ' ' | head -1 || true)"
  mirror="${mirror:-http://deb.debian.org/debian}"
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror" \
      > /etc/apt/sources.list.d/bookworm-backports.sources
  fi
  apt-get update -q
  apt-get install -y -q --no-install-recommends -t bookworm-backports mesa-vulkan-drivers \
    || echo "install-debian-deps: lavapipe (Mesa 25) could not be installed; its tests will say they did not run"
else
  apt-get install -y -q --no-install-recommends mesa-vulkan-drivers \
    || echo "install-debian-deps: mesa-vulkan-drivers could not be installed; the lavapipe tests will say they did not run"
fi
