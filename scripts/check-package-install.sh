#!/usr/bin/env bash
# Installs the built .deb for real (as root) and checks the tunnel account and the units:
#   dpkg -i: user and group "autossh" (system, no login shell, home /var/lib/autossh), home and
#   .ssh/ owned by autossh, mode 0700; `autossh -V` runs as that user; the installed units pass
#   scripts/check-units.sh with their binaries present;
#   dpkg --purge: binaries gone, the account and its home kept (on purpose, see debian/postrm);
#   dpkg -i again: no error, nothing duplicated (one passwd, group and shadow line each);
#   dpkg --purge at the end: the machine is left as found, except the kept account.
# Debian's autossh conflicts with the package: it is removed first if installed, and not put
# back. Usage: check-package-install.sh path/to/autossh-rs_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
deb=${1:?usage: check-package-install.sh DEB}
[ -f "$deb" ] || { echo "package-install: no such file: $deb" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "package-install: needs root (dpkg -i)" >&2; exit 1; }

fail() { echo "package-install: $*" >&2; exit 1; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }
purge() { dpkg --purge autossh-rs >/dev/null 2>&1 || true; }
trap 'installed autossh-rs && purge' EXIT

if installed autossh; then
  echo "package-install: removing Debian's autossh (conflicts with autossh-rs)" >&2
  dpkg --remove autossh >/dev/null
fi
for tool in getent runuser stat; do
  command -v "$tool" >/dev/null || fail "$tool is missing"
done

# check_account: the user, group, home and .ssh/ as postinst makes them.
check_account() {
  local entry shell home uid
  entry=$(getent passwd autossh) || fail "no user autossh"
  IFS=: read -r _ _ uid _ _ home shell <<<"$entry"
  [ "$home" = /var/lib/autossh ] || fail "autossh's home is $home"
  [ "$shell" = /usr/sbin/nologin ] || fail "autossh's shell is $shell"
  [ "$uid" -lt 1000 ] || fail "autossh is not a system user (uid $uid)"
  getent group autossh >/dev/null || fail "no group autossh"
  for d in /var/lib/autossh /var/lib/autossh/.ssh; do
    [ "$(stat -c '%U:%G %a' "$d")" = "autossh:autossh 700" ] \
      || fail "$d is $(stat -c '%U:%G %a' "$d"), want autossh:autossh 700"
  done
}

# one_line FILE: exactly one autossh entry.
one_line() {
  local n
  n=$(grep -c '^autossh:' "$1" || true)
  [ "$n" -eq 1 ] || fail "$1 has $n autossh lines"
}

dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb failed"
check_account
runuser -u autossh -- autossh -V | grep -q '^autossh ' || fail "autossh -V as user autossh failed"
runuser -u autossh -- autossh-echo --version | grep -q '^autossh-echo ' \
  || fail "autossh-echo --version as user autossh failed"
bash scripts/check-units.sh /usr/lib/systemd/system

dpkg --purge autossh-rs >/dev/null || fail "dpkg --purge failed"
[ ! -e /usr/bin/autossh ] || fail "/usr/bin/autossh left after purge"
check_account

dpkg -i "$deb" >/dev/null || fail "reinstalling over the kept account failed"
check_account
for f in /etc/passwd /etc/group /etc/shadow; do one_line "$f"; done

dpkg --purge autossh-rs >/dev/null || fail "the last dpkg --purge failed"
echo "package-install: ok (the autossh account and /var/lib/autossh are kept, as on purge)" >&2
