# shellcheck shell=bash
# The Node.js line the project runs on (Lambda's nodejs24.x), and the release set-up installs
# when the machine's own node is older: the official binary as the npm registry ships it in
# node-linux-<arch>, pinned by version and by the registry's SHA-512 of the package.
PROJECT_NODE_MAJOR=24
PROJECT_NODE_VERSION=24.21.0
# shellcheck disable=SC2034 # read by scripts/setup.sh, which sources this file
declare -A PROJECT_NODE_INTEGRITY=(
  [x64]=sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q==
  [arm64]=sha512-FpJRPEz2OvvTLfjIOlNGFY9JLPMKgl5m+d4oGYBLg24kJ1mmvN1Zl/HPJgF4HDaJ51ISev1l1cRZ/DM+keXW5g==
)
PROJECT_NODE_DIR=.tools/node-v$PROJECT_NODE_VERSION
export PROJECT_NODE_MAJOR PROJECT_NODE_VERSION PROJECT_NODE_DIR
