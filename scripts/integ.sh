#!/usr/bin/env bash
# npm run integ: deploys the integration test (test/integ/integ.ticket-key-rotation.ts) to the
# AWS account of the current credentials, in AWS_REGION, runs its assertions (two rotations,
# proved), destroys it, and refreshes its snapshot. integ-runner does all of it; extra arguments
# go to integ-runner (--no-clean keeps the stacks, -v shows more).
set -euo pipefail
cd "$(dirname "$0")/.."
region=${AWS_REGION:-${AWS_DEFAULT_REGION:-}}
if [ -z "$region" ]; then
  echo "npm run integ: no region: set AWS_REGION (for example AWS_REGION=eu-west-1 npm run integ); the account must be bootstrapped there (npx cdk bootstrap aws://ACCOUNT/REGION)" >&2
  exit 1
fi
npm run build --silent
exec bash scripts/with-node.sh node_modules/.bin/integ-runner --config integ.config.json --force --no-update-workflow --parallel-regions "$region" "$@"
