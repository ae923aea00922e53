#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages the test suites need, when missing (run as root):
#   chromium       headless browser for the page tests; also ships SwiftShader, the software Vulkan
#                  driver that WebGPU runs on when the machine has no GPU
#   libvulkan1     the Vulkan loader that Dawn (the `webgpu` npm package) loads
#   python3-numpy  for the independent numpy implementation in tools/ that checks our output
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1' || missing+=(libvulkan1)
/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1 || missing+=(python3-numpy)
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-debian-deps: chromium, libvulkan1 and python3-numpy are present"
  exit 0
fi
echo "install-debian-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
