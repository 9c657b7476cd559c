#!/usr/bin/env bash
# Installs what the demo and the tests need on Debian or Ubuntu, only what is missing: Node.js
# 24, nginx, haproxy, apache2, shellcheck, pyflakes3, openssl and python3 from the distribution, and the
# npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have nginx || missing+=(nginx)
have haproxy || missing+=(haproxy)
have apache2 || missing+=(apache2)
have shellcheck || missing+=(shellcheck)
have pyflakes3 || missing+=(pyflakes3)
have openssl || missing+=(openssl)
have python3 || missing+=(python3)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "setup: missing ${missing[*]}; as root run: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]} with apt-get" >&2
  # Keep the packages' services from starting: the fleet runs its own nginx, HAProxy and Apache.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    created_policy=1
  fi
  status=0
  { "${sudo[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || status=$?
  [ "$created_policy" = 1 ] && "${sudo[@]}" rm -f "$policy"
  [ "$status" -eq 0 ] || { echo "setup: apt-get failed to install ${missing[*]}" >&2; exit 1; }
fi

# shellcheck source=scripts/node-version.sh
source scripts/node-version.sh

# Node.js: the machine's own when it is the project's line or newer; otherwise the pinned
# release from the npm registry (node-linux-<arch>), checked against its SHA-512, in .tools.
install_project_node() {
  local arch work tarball integrity
  case "$(uname -m)" in
    x86_64) arch=x64 ;;
    aarch64) arch=arm64 ;;
    *) echo "setup: no Node.js $PROJECT_NODE_VERSION for $(uname -m) here: install Node.js $PROJECT_NODE_MAJOR or newer first" >&2; exit 1 ;;
  esac
  work=$(mktemp -d)
  trap 'rm -rf -- "$work"' RETURN
  echo "setup: Node.js $(node --version 2>/dev/null || echo none) is older than $PROJECT_NODE_MAJOR: installing $PROJECT_NODE_VERSION in $PROJECT_NODE_DIR from the npm registry" >&2
  tarball=$(cd "$work" && npm pack --silent "node-linux-$arch@$PROJECT_NODE_VERSION")
  integrity="sha512-$(openssl dgst -sha512 -binary "$work/$tarball" | base64 -w 0)"
  if [ "$integrity" != "${PROJECT_NODE_INTEGRITY[$arch]}" ]; then
    echo "setup: node-linux-$arch@$PROJECT_NODE_VERSION from the registry does not match its pinned SHA-512: not installed" >&2
    exit 1
  fi
  mkdir -p "$work/node"
  tar -xzf "$work/$tarball" -C "$work/node" --strip-components=1 package/bin/node package/LICENSE
  mkdir -p "$(dirname "$PROJECT_NODE_DIR")"
  rm -rf -- "$PROJECT_NODE_DIR"
  mv -- "$work/node" "$PROJECT_NODE_DIR"
}

system_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$system_major" -lt "$PROJECT_NODE_MAJOR" ]; then
  [ "$("$PROJECT_NODE_DIR/bin/node" --version 2>/dev/null || true)" = "v$PROJECT_NODE_VERSION" ] || install_project_node
  PATH="$PWD/$PROJECT_NODE_DIR/bin:$PATH"
  export PATH
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
