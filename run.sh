#!/usr/bin/env bash
# eigentone's two commands. Each sets up everything it needs first (system packages
# when run as root, a virtual environment in .venv, Python packages), then:
#   bash run.sh demo   renders the demo MIDI with the shipped instruments to out/demo.wav (+ .png)
#   bash run.sh test   builds the DAW plugin and its test hosts, then runs the whole default test suite
#   bash run.sh plugin builds the DAW plugin (VST3, CLAP, LV2) and installs it into ~/.vst3, ~/.clap, ~/.lv2
# Set-up is skipped when nothing changed since the last successful one; the plugin build is incremental.
set -euo pipefail
cd "$(dirname "$0")"

die() { echo "run.sh: error: $*" >&2; exit 1; }

SYSTEM_PACKAGES=(libportaudio2 jackd2 libsndfile1)
# The DAW plugin: toolchain, DPF, the native core's headers, and (tests) lilv for the LV2 host and lv2info.
PLUGIN_PACKAGES=(g++ make pkg-config dpf-source zlib1g-dev nlohmann-json3-dev liblilv-dev lv2-dev lilv-utils)
TORCH_VERSION=2.13.0

need_system_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    die "missing system packages: ${missing[*]}. Run as root, or: sudo apt-get install -y ${missing[*]}"
  fi
  command -v apt-get >/dev/null || die "missing system packages ${missing[*]} and no apt-get on this machine"
  echo "run.sh: installing system packages: ${missing[*]}"
  echo "jackd2 jackd/tweak_rt_limits boolean false" | debconf-set-selections 2>/dev/null || true
  apt-get update -qq || die "apt-get update failed (no network to the Debian mirrors?)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# Build the plugin (make -j2, incremental) into plugins/native/build/dpf/bin; "$@": extra make targets.
build_plugin() {
  need_system_packages "${PLUGIN_PACKAGES[@]}"
  local log=plugins/native/build/make.log
  mkdir -p plugins/native/build
  make -C plugins/native -j2 plugin "$@" >"$log" 2>&1 \
    || { tail -n 15 "$log" >&2; die "building the plugin failed (full log: $log)"; }
}

# The plugin lists the bundles in $XDG_DATA_HOME/eigentone/{shipped,instruments} (engine/install_cli.py).
eigentone_data_dir() {
  local base="${XDG_DATA_HOME:-}"
  [[ "$base" == /* ]] || base="$HOME/.local/share"
  echo "$base/eigentone"
}

# Copy $1 to $2 (a file or a folder) atomically: a temporary copy beside it, then one rename.
install_copy() {
  local src="$1" dst="$2" tmp
  mkdir -p "$(dirname "$dst")"
  tmp="$(dirname "$dst")/.$(basename "$dst").tmp.$$"
  rm -rf "$tmp"
  cp -R "$src" "$tmp" || die "cannot copy $src into $(dirname "$dst")"
  rm -rf "$dst"
  mv "$tmp" "$dst"
}

install_plugin() {
  local shipped bundle bin=plugins/native/build/dpf/bin
  shipped="$(eigentone_data_dir)/shipped"
  mkdir -p "$shipped" || die "cannot create $shipped"
  for bundle in assets/models/*.etone; do install_copy "$bundle" "$shipped/$(basename "$bundle")"; done
  build_plugin   # after the bundles: the LV2 metadata lists the instruments installed at build time
  install_copy "$bin/eigentone.vst3" "$HOME/.vst3/eigentone.vst3"
  install_copy "$bin/eigentone.clap" "$HOME/.clap/eigentone.clap"
  install_copy "$bin/eigentone.lv2" "$HOME/.lv2/eigentone.lv2"
  echo "run.sh: installed ~/.vst3/eigentone.vst3, ~/.clap/eigentone.clap, ~/.lv2/eigentone.lv2"
  echo "run.sh: instruments: $shipped (shipped) and $(eigentone_data_dir)/instruments (eigentone install FILE.etone)"
}

setup_python() {
  local py="${PYTHON:-python3}"
  command -v "$py" >/dev/null || die "python3 not found; install Python >= 3.11"
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python >= 3.11 needed, found $("$py" --version 2>&1)"
  local stamp=".venv/.eigentone-setup"
  local want
  want="$(cat pyproject.toml run.sh | sha256sum | cut -d' ' -f1)"
  if [ -x .venv/bin/eigentone ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv || die "could not create .venv (on Debian: apt-get install python3-venv)"
  fi
  echo "run.sh: installing Python packages into .venv (first run takes a few minutes; log: .venv/setup.log)"
  local log=.venv/setup.log
  pip_install() { .venv/bin/python -m pip install --disable-pip-version-check -q "$@" >>"$log" 2>&1; }
  : > "$log"
  # torch pinned here to the CPU wheel; pyproject keeps a range that this satisfies.
  pip_install "torch==${TORCH_VERSION}" \
    || { tail -n 5 "$log" >&2; die "pip install torch==${TORCH_VERSION} failed (is the package registry reachable?)"; }
  pip_install -e ".[train,dev]" || { tail -n 5 "$log" >&2; die "pip install -e .[train,dev] failed (see $log)"; }
  echo "$want" > "$stamp"
}

case "${1:-}" in
  demo)
    need_system_packages "${SYSTEM_PACKAGES[@]}"
    setup_python
    shift
    exec .venv/bin/eigentone render assets/demo/demo.mid --effects assets/effects/default.json \
      --out out/demo.wav --spectrogram out/demo.png "$@"
    ;;
  test)
    need_system_packages "${SYSTEM_PACKAGES[@]}"
    setup_python
    build_plugin plugin-test-hosts
    shift
    exec .venv/bin/python -m pytest -q "$@"
    ;;
  setup)
    need_system_packages "${SYSTEM_PACKAGES[@]}"
    setup_python
    ;;
  plugin)
    install_plugin
    ;;
  *)
    echo "usage: bash run.sh demo | test | plugin | setup" >&2
    exit 2
    ;;
esac
