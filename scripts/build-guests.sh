#!/usr/bin/env bash
# Build the WebAssembly extension modules in guests/ (a Cargo workspace of its
# own) for wasm32-wasip2, in release. Idempotent and quick when nothing changed.
# Output: guests/target/wasm32-wasip2/release/*.wasm (WebAssembly components).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "[build-guests] adding the wasm32-wasip2 target" >&2
    rustup target add wasm32-wasip2
fi

cargo build --manifest-path guests/Cargo.toml --release --target wasm32-wasip2 "$@"
ls guests/target/wasm32-wasip2/release/*.wasm >&2
