#!/usr/bin/env bash
# Portability (issue 17), as far as this Linux machine can check it:
#  1. autossh and autossh-echo type-check and lint clean for FreeBSD and macOS
#     (`cargo clippy --target T ... -- -D warnings`; the targets are added with rustup when
#     missing). Nothing is linked or run for them: there is no FreeBSD or macOS here.
#  2. The portable family of src/shell/platform (the `portable` feature: Linux-only detectors
#     compiled out) passes the library's unit tests and a subset of the integration tests on
#     Linux, so the fallbacks the BSDs and macOS use really run: supervision, usage, tunnel,
#     tunnels (supervisor, CLI, one and many tunnels, the control socket) and held (the relay
#     without splice; the SIGKILL tests there check the janitor standing in for the
#     parent-death signal), and app_view's frozen-session tests (the application's view
#     through the relay and probes alone). Left out: app_view's slow queries, faults, roaming
#     and the other netns tests (they assert the timings of Linux's detectors), and the slow
#     rest (the full suite runs them once, built for Linux). About a minute of tests on 2
#     cores, plus one build.
#  3. OpenBSD (a tier-3 target, no std shipped): type-checked with nightly's -Zbuild-std when
#     a nightly toolchain is there (rust-src added with rustup), else skipped, saying so. Not
#     linted: nightly's clippy differs from stable's on code unrelated to the platform.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(x86_64-unknown-freebsd aarch64-apple-darwin)

installed=$(rustup target list --installed)
for t in "${targets[@]}"; do
  if ! grep -qx "$t" <<<"$installed"; then
    echo "check-portability: rustup target add $t" >&2
    rustup target add "$t"
  fi
done
for t in "${targets[@]}"; do
  echo "check-portability: clippy for $t" >&2
  cargo clippy --target "$t" -p autossh -p autossh-echo --lib --bins -- -D warnings
done

if cargo +nightly --version >/dev/null 2>&1; then
  echo "check-portability: cargo +nightly check for x86_64-unknown-openbsd (-Zbuild-std)" >&2
  rustup component list --toolchain nightly --installed | grep -q '^rust-src' ||
    rustup component add rust-src --toolchain nightly
  cargo +nightly check -Zbuild-std=std,panic_abort --target x86_64-unknown-openbsd \
    -p autossh -p autossh-echo --lib --bins --target-dir target/openbsd
else
  echo "check-portability: OpenBSD skipped: no nightly toolchain for -Zbuild-std" >&2
fi

echo "check-portability: the portable family's tests on Linux" >&2
cargo clippy -p autossh --features portable --all-targets -- -D warnings
cargo test -p autossh --features portable --no-fail-fast --lib \
  --test supervision --test usage --test tunnel --test tunnels --test held \
  -- --test-threads="${TEST_THREADS:-4}"
# The application's view of a frozen session, with its fallback's bound (25 s, not 5 s).
cargo test -p autossh --features portable --test app_view frozen \
  -- --test-threads="${TEST_THREADS:-4}"
