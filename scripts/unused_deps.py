#!/usr/bin/env python3
"""Fails when a crate declares a dependency its code never names.

A dependency counts as used when its crate name (dashes as underscores)
appears as a word in the crate's Rust sources (src/, tests/, examples/,
benches/). Run from the repository root; CI runs it from scripts/test.sh.
"""
import glob
import re
import sys
import tomllib

workspace = tomllib.load(open("Cargo.toml", "rb"))
unused = []
for member in workspace["workspace"]["members"]:
    manifest = tomllib.load(open(f"{member}/Cargo.toml", "rb"))
    source = "".join(open(f, encoding="utf-8").read() for f in glob.glob(f"{member}/**/*.rs", recursive=True))
    for section in ("dependencies", "dev-dependencies", "build-dependencies"):
        for dep in manifest.get(section, {}):
            if not re.search(r"\b" + re.escape(dep.replace("-", "_")) + r"\b", source):
                unused.append(f"{member}/Cargo.toml [{section}] {dep}")
declared = set(workspace["workspace"].get("dependencies", {}))
used_anywhere = set()
for member in workspace["workspace"]["members"]:
    manifest = tomllib.load(open(f"{member}/Cargo.toml", "rb"))
    for section in ("dependencies", "dev-dependencies", "build-dependencies"):
        used_anywhere.update(manifest.get(section, {}))
unused += [f"Cargo.toml [workspace.dependencies] {d}" for d in sorted(declared - used_anywhere)]
if unused:
    print("unused dependencies (remove them):\n  " + "\n  ".join(unused))
    sys.exit(1)
print(f"dependencies: every declared one is used ({len(workspace['workspace']['members'])} crates)")
