# Shared by ./tools/up and ./tools/test: find the repo, install what is
# missing from Debian's packages, build with the release preset.
# Sourced, not executed.

YILIAN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export YILIAN_ROOT

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# Packages needed to build and run the engine.
YILIAN_BUILD_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git curl ca-certificates
  libboost-dev libboost-system-dev librdkafka-dev libprotobuf-dev protobuf-compiler
  libsqlite3-dev sqlite3 libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev
  nlohmann-json3-dev libssl-dev libicu-dev catch2 tzdata libjemalloc-dev
)
# Extra packages the test suite's peers need (Kafka broker, HL7 clients).
YILIAN_TEST_PACKAGES=(
  openjdk-17-jdk-headless maven python3 python3-hl7 procps iproute2
  chromium fonts-wqy-microhei python3-venv
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_packages() {
  local missing=()
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "Debian packages: all ${#} present"
    return 0
  fi
  say "Installing missing Debian packages: ${missing[*]}"
  as_root apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || die "apt-get install failed for: ${missing[*]}"
}

build_release() {
  say "Building (CMake preset 'release' into build/)"
  cd "$YILIAN_ROOT" || die "cannot enter $YILIAN_ROOT"
  if [ ! -f build/CMakeCache.txt ]; then
    cmake --preset release >build-configure.log 2>&1 || { cat build-configure.log; die "cmake configure failed"; }
    rm -f build-configure.log
  fi
  cmake --build --preset release -- -k 0 || die "build failed (see the compiler output above)"
  [ -x build/bin/yilian ] || die "build finished but build/bin/yilian is missing"
}

# The clinic page's browser test (tests/e2e/console): playwright-core from the
# npm registry drives Debian's chromium; it never downloads a browser.
ensure_console_e2e() {
  local dir="$YILIAN_ROOT/tests/e2e/console"
  node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' 2>/dev/null \
    || die "the console test needs Node.js 20 or later (playwright-core); found: $(node --version 2>/dev/null || echo none)"
  if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    say "Installing the console test's npm packages (npm ci in tests/e2e/console)"
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) \
      || die "npm ci failed in tests/e2e/console"
  fi
}

# The identity index's Febrl quality test compares with recordlinkage's ECM
# classifier (PyPI), in a venv beside the build (created before the first
# configure, which looks for it).
ensure_identity_venv() {
  local venv="$YILIAN_ROOT/build/venv"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import recordlinkage' 2>/dev/null; then
    say "Installing recordlinkage into build/venv (PyPI; for the Febrl identity comparison)"
    mkdir -p "$YILIAN_ROOT/build"
    python3 -m venv "$venv" || die "python3 -m venv failed (is python3-venv installed?)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'recordlinkage==0.16' \
      || die "pip install recordlinkage failed"
  fi
}
