#!/bin/sh
# Same-run comparison of lossgraph with the peer frameworks (see compare.py for
# the environment variables). Builds the release binary unless LOSSGRAPH is set.
#   PEER_PYTHON=/path/to/venv/bin/python benches/compare.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
if [ -z "${LOSSGRAPH:-}" ]; then
    (cd "$repo" && cargo build --release --quiet -p lossgraph-cli --bin lossgraph)
    target=${CARGO_TARGET_DIR:-$repo/target}
    LOSSGRAPH="$target/release/lossgraph"
    export LOSSGRAPH
fi
exec python3 "$here/compare.py" "$@"
