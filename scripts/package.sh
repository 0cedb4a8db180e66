#!/usr/bin/env bash
# Builds the Debian package autossh-rs (autossh, autossh-echo, man pages, shell completions,
# systemd units) and checks its contents. Prints the .deb's path on the last line.
#
# Installs cargo-deb when missing (a few minutes of compiling, once). Honours CARGO_TARGET_DIR;
# the generated man pages and completions go to target/assets/ in the source tree, where
# [package.metadata.deb] in Cargo.toml expects them.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
  echo "package: installing cargo-deb" >&2
  cargo install cargo-deb --locked
fi
command -v dpkg-deb >/dev/null || { echo "package: dpkg-deb is missing" >&2; exit 1; }

cargo build --release -p autossh -p autossh-echo --bins
# --release: reuses the autossh and autossh-echo libraries just built.
rm -rf target/assets
cargo run --release -q -p xtask -- gen target/assets >/dev/null

out=$(cargo deb -p autossh --no-build)
deb=$(printf '%s\n' "$out" | grep '\.deb$' | tail -n1)
[ -f "$deb" ] || { echo "package: cargo deb produced no .deb: $out" >&2; exit 1; }

listing=$(dpkg-deb -c "$deb")
missing=0
for f in \
  usr/bin/autossh \
  usr/bin/autossh-echo \
  usr/share/man/man1/autossh.1.gz \
  usr/share/man/man1/autossh-echo.1.gz \
  usr/share/bash-completion/completions/autossh \
  usr/share/bash-completion/completions/autossh-echo \
  usr/share/zsh/vendor-completions/_autossh \
  usr/share/zsh/vendor-completions/_autossh-echo \
  usr/share/fish/vendor_completions.d/autossh.fish \
  usr/share/fish/vendor_completions.d/autossh-echo.fish \
  usr/lib/systemd/system/autossh.service \
  usr/lib/systemd/system/autossh@.service \
  usr/lib/systemd/system/autossh-echo.service \
  usr/share/doc/autossh-rs/autossh-alerts.yml \
  usr/share/doc/autossh-rs/autossh-alerts.test.yml \
  usr/share/doc/autossh-rs/examples/autossh-echo-port7.conf \
  usr/share/doc/autossh-rs/examples/autossh-credential.conf; do
  if ! printf '%s\n' "$listing" | grep -q -- " \./$f\$"; then
    echo "package: $deb lacks /$f" >&2
    missing=1
  fi
done
[ "$missing" -eq 0 ] || exit 1

for field in Package:autossh-rs Conflicts:autossh Replaces:autossh Provides:autossh; do
  name=${field%%:*} want=${field#*:}
  got=$(dpkg-deb -f "$deb" "$name")
  [ "$got" = "$want" ] || { echo "package: $name is '$got', want '$want'" >&2; exit 1; }
done
dpkg-deb -f "$deb" Depends | grep -q openssh-client \
  || { echo "package: Depends lacks openssh-client" >&2; exit 1; }

# The maintainer scripts that make (and keep) the tunnel account are in.
ctrl=$(mktemp -d)
dpkg-deb -e "$deb" "$ctrl"
for script in postinst postrm; do
  [ -x "$ctrl/$script" ] || { rm -rf "$ctrl"; echo "package: no $script" >&2; exit 1; }
done
grep -q 'useradd --system' "$ctrl/postinst" \
  || { rm -rf "$ctrl"; echo "package: postinst does not make the autossh user" >&2; exit 1; }
rm -rf "$ctrl"

# The packaged binaries run.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp"
"$tmp/usr/bin/autossh" -V | grep -q '^autossh ' \
  || { echo "package: packaged autossh -V failed" >&2; exit 1; }
"$tmp/usr/bin/autossh-echo" --version | grep -q '^autossh-echo ' \
  || { echo "package: packaged autossh-echo --version failed" >&2; exit 1; }
zcat "$tmp/usr/share/man/man1/autossh.1.gz" | grep -q AUTOSSH_GATETIME \
  || { echo "package: autossh.1 lacks the environment section" >&2; exit 1; }

echo "package: ok, contents checked" >&2
echo "$deb"
