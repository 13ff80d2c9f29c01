# Sourced by scripts/run and scripts/test: installs the Debian packages that are missing.
# Usage: ensure_packages pkg...
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "installing: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ ! -f /var/lib/apt/periodic/okta-sidecar-updated ] || ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null; then
    $sudo apt-get update -q </dev/null
    $sudo mkdir -p /var/lib/apt/periodic && $sudo touch /var/lib/apt/periodic/okta-sidecar-updated
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
  fi
}

# What building the sidecar needs.
BUILD_PACKAGES=(cmake g++ make ninja-build ccache pkg-config libboost1.81-dev nlohmann-json3-dev
                libspdlog-dev libssl-dev libgtest-dev libgmock-dev libhiredis-dev)
# What the tests need on top: real clients and tools the tests drive.
# chromium + fonts-dejavu-core: dashboard test (headless browser, readable screenshot);
# prometheus: promtool check metrics; systemd: systemd-analyze verify/security;
# python3-yaml: compose/Kubernetes YAML parsing; python3-requests: the Python client recipe;
# dpkg-dev: dpkg-shlibdeps for the .deb CPack builds.
TEST_PACKAGES=(curl openssl python3 redis-server clang-14 libclang-rt-14-dev chromium fonts-dejavu-core
               prometheus systemd python3-yaml python3-requests dpkg-dev)

# Node.js and npm for the Node client recipes (tests/integration/recipes_test.py installs the
# Okta Node SDK and undici from npm): Debian's nodejs + npm, unless a Node.js with npm is
# already there (NodeSource's nodejs package bundles npm and conflicts with Debian's).
ensure_node() {
  command -v node >/dev/null && command -v npm >/dev/null && return 0
  ensure_packages nodejs npm
}

# ccache keyed on paths relative to the checkout, so a fresh clone elsewhere (CI) still hits.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}" CCACHE_NOHASHDIR=true

configure_and_build() {  # dir [cmake args...] [-- targets...]
  local dir=$1; shift
  local args=() targets=()
  while (($#)); do
    if [ "$1" = "--" ]; then shift; targets=("$@"); break; fi
    args+=("$1"); shift
  done
  cmake -S . -B "$dir" -G Ninja "${args[@]}" >/dev/null
  if ((${#targets[@]})); then
    cmake --build "$dir" -j "$(nproc)" --target "${targets[@]}"
  else
    cmake --build "$dir" -j "$(nproc)"
  fi
}
