#!/usr/bin/env bash
# Installs what the demo and the tests need on Debian or Ubuntu, only what is missing:
# nginx, haproxy, shellcheck, openssl and python3 from the distribution, and the npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "setup: Node.js 20 or newer is needed (found $(node --version)): install a current Node.js first" >&2
  exit 1
fi

missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have nginx || missing+=(nginx)
have haproxy || missing+=(haproxy)
have shellcheck || missing+=(shellcheck)
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
  # Keep the packages' services from starting: the fleet runs its own nginx and HAProxy.
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

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
