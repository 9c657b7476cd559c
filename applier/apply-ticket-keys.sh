#!/usr/bin/env bash
# Applies a TLS session ticket key set to one server: the program is ticket_keys/ beside this
# file (Python 3.9 or newer); `--help` lists the options, ticket_keys/apply.py the exit codes.
# Prints exactly one JSON summary line on stdout, on every path, and never key material.
set -euo pipefail
ulimit -c 0 # it holds keys: a crash must not write them to a core file
here=${BASH_SOURCE[0]%/*}
[ "$here" != "${BASH_SOURCE[0]}" ] || here=.
if ! command -v python3 >/dev/null; then
  echo 'apply-ticket-keys: python3 is not installed: install it (apt-get install python3, or dnf install python3)' >&2
  echo '{"action":"failed","flavor":"","exitCode":8,"keys":[],"error":"python3 is not installed: install it (apt-get install python3, or dnf install python3)"}'
  exit 8
fi
exec python3 -I -S "$here/ticket_keys/__main__.py" "$@"
