#!/usr/bin/env bash
# Runs a command with the project's Node.js first on PATH: the one scripts/setup.sh installed in
# .tools when the machine's own is older than the line the project runs on.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/node-version.sh
source "$root/scripts/node-version.sh"
if [ -x "$root/$PROJECT_NODE_DIR/bin/node" ]; then
  PATH="$root/$PROJECT_NODE_DIR/bin:$PATH"
  export PATH
fi
exec "$@"
