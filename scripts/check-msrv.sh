#!/usr/bin/env bash
# Checks that rust-version in Cargo.toml is honest: no resolved dependency asks for a newer
# Rust than the workspace declares.
set -euo pipefail
cd "$(dirname "$0")/.."
declared=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
cargo metadata --format-version 1 --locked | python3 -c '
import json, sys
declared = tuple(int(x) for x in sys.argv[1].split("."))
m = json.load(sys.stdin)
used = {n["id"] for n in m["resolve"]["nodes"]}
bad = []
for p in m["packages"]:
    rv = p.get("rust_version")
    if p["id"] in used and rv and tuple(int(x) for x in rv.split(".")[:2]) > declared[:2]:
        bad.append("%s %s needs Rust %s" % (p["name"], p["version"], rv))
if bad:
    print("rust-version " + sys.argv[1] + " is not honest:", *bad, sep="\n  ")
    sys.exit(1)
print("rust-version " + sys.argv[1] + ": every dependency fits")
' "$declared"
