#!/usr/bin/env bash
# integ-runner's app command: runs an integration test (test/integ/integ.NAME.ts) from its
# compiled JavaScript in dist/, which `npm run build` writes.
set -euo pipefail
test_file=$1
compiled="dist/${test_file%.ts}.js"
if [ ! -f "$compiled" ]; then
  echo "integ-app: $compiled is missing: run npm run build first" >&2
  exit 1
fi
exec node "$compiled"
