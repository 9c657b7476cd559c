#!/usr/bin/env bash
# Prepares a node once for managed TLS session ticket keys (the key directory, the server's
# config loading them, the boot-time fetch), or with --prestart readies it before its server
# starts: the program is ticket_keys/onboarding.py beside this file (Python 3.9 or newer);
# `--help` lists the options, onboarding.py the exit codes. Prints exactly one JSON summary
# line on stdout, on every path.
set -euo pipefail
ulimit -c 0 # a prestart holds the key set: a crash must not write it to a core file
here=${BASH_SOURCE[0]%/*}
[ "$here" != "${BASH_SOURCE[0]}" ] || here=.
if ! command -v python3 >/dev/null; then
  echo 'onboard-node: python3 is not installed: install it (apt-get install python3, or dnf install python3)' >&2
  echo '{"action":"failed","exitCode":8,"error":"python3 is not installed: install it (apt-get install python3, or dnf install python3)"}'
  exit 8
fi
exec python3 -I -S "$here/ticket_keys/onboard.py" "$@"
