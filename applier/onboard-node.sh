#!/usr/bin/env bash
# Prepares a node once for managed TLS session ticket keys: the key directory on a memory
# filesystem (recreated at boot), the server's config loading the managed keys, checked with
# the server's own config test. Refuses, changing nothing, when the config cannot be changed
# safely. Prints exactly one JSON summary line on stdout on every path.
#
# With --prestart it does only what a node needs before its server starts (systemd
# ExecStartPre): the key directory, and for HAProxy, which refuses to start without its
# tls-ticket-keys file, three random keys of the node's own until the applier runs.
#
# Exit codes:
#   0  onboarded, or already onboarded (nothing changed)
#   2  usage error; nothing changed
#   3  the config or the key directory cannot be changed safely; nothing changed
#   5  the config test failed after the change; the config was restored byte for byte
#   8  could not write; nothing changed
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: onboard-node.sh --config FILE [options]
  --flavor nginx|haproxy      server flavor (default nginx)
  --config FILE               nginx: the file with the TLS server blocks; haproxy: haproxy.cfg
  --key-dir DIR               the managed key directory (default /run/tls-ticket-keys)
  --include FILE              the managed include (default: ticket-keys.conf or tls-ticket-keys in DIR)
  --test-cmd CMD              config test (default: nginx -t -q; haproxy -c -q -f FILE)
  --tmpfiles-dir DIR          where systemd-tmpfiles reads its config (default /etc/tmpfiles.d; none to skip)
  --systemd-dir DIR           haproxy: where the ExecStartPre drop-in goes (default /etc/systemd/system; none to skip)
  --allow-persistent-key-dir  accept a key directory on a persistent filesystem
  --prestart                  only prepare the key directory (and HAProxy's own keys) before a start
EOF
}

summary_action=failed
summary_error=
summary_changed=0
summary_storage=
flavor=nginx
config=
key_dir=/run/tls-ticket-keys
include_file=
test_cmd=
tmpfiles_dir=/etc/tmpfiles.d
systemd_dir=/etc/systemd/system
allow_persistent=0
prestart=0
backup=

# shellcheck disable=SC2317 # invoked by the EXIT trap
print_summary() {
  local code=$?
  [ -n "$backup" ] && rm -f -- "$backup"
  SUMMARY_ACTION=$summary_action SUMMARY_ERROR=$summary_error SUMMARY_FLAVOR=$flavor SUMMARY_CONFIG=$config \
  SUMMARY_CHANGED=$summary_changed SUMMARY_KEY_DIR=$key_dir SUMMARY_STORAGE=$summary_storage SUMMARY_EXIT=$code \
    python3 -c '
import json, os
e = os.environ
out = {"action": e["SUMMARY_ACTION"], "flavor": e["SUMMARY_FLAVOR"], "exitCode": int(e["SUMMARY_EXIT"]),
       "config": e["SUMMARY_CONFIG"], "changed": int(e["SUMMARY_CHANGED"]), "keyDir": e["SUMMARY_KEY_DIR"]}
if e["SUMMARY_STORAGE"]:
    out["keyStorage"] = e["SUMMARY_STORAGE"]
    out["keysInMemory"] = e["SUMMARY_STORAGE"] in ("tmpfs", "ramfs")
if e["SUMMARY_ERROR"]:
    out["error"] = e["SUMMARY_ERROR"]
print(json.dumps(out, separators=(",", ":")))
' || echo '{"action":"failed","error":"could not print the summary"}'
  exit "$code"
}
trap print_summary EXIT

fail() {
  local code=$1 action=$2
  shift 2
  summary_action=$action
  summary_error="$*"
  echo "onboard-node: $*" >&2
  exit "$code"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --flavor | --config | --key-dir | --include | --test-cmd | --tmpfiles-dir | --systemd-dir)
      [ $# -ge 2 ] || fail 2 refused "option $1 needs a value (see --help)"
      case "$1" in
        --flavor) flavor=$2 ;;
        --config) config=$2 ;;
        --key-dir) key_dir=$2 ;;
        --include) include_file=$2 ;;
        --test-cmd) test_cmd=$2 ;;
        --tmpfiles-dir) tmpfiles_dir=$2 ;;
        --systemd-dir) systemd_dir=$2 ;;
      esac
      shift 2
      ;;
    --allow-persistent-key-dir) allow_persistent=1; shift ;;
    --prestart) prestart=1; shift ;;
    -h | --help) usage >&2; summary_action=help; exit 0 ;;
    *) fail 2 refused "unknown option $1 (see --help)" ;;
  esac
done

case "$flavor" in
  nginx) include_file=${include_file:-$key_dir/ticket-keys.conf} ;;
  haproxy) include_file=${include_file:-$key_dir/tls-ticket-keys} ;;
  *) fail 2 refused "flavor $flavor is not supported: use --flavor nginx or --flavor haproxy" ;;
esac
case "$key_dir" in /*) ;; *) fail 2 refused "--key-dir must be an absolute path (got $key_dir)" ;; esac
key_dir=$(realpath -m -- "$key_dir")
include_file=$(realpath -m -s -- "$include_file")

filesystem_of() {
  local path=$1
  while [ ! -e "$path" ]; do path=$(dirname "$path"); done
  stat -f -c %T -- "$path"
}
summary_storage=$(filesystem_of "$key_dir")
case "$summary_storage" in
  tmpfs | ramfs) ;;
  *)
    [ "$allow_persistent" = 1 ] ||
      fail 3 refused "--key-dir $key_dir is on $summary_storage, a persistent filesystem: keys there outlive their rotation; use a directory under /run, or mount a tmpfs there first (mount -t tmpfs -o size=1m,mode=0700 tmpfs $key_dir, and add it to /etc/fstab), or pass --allow-persistent-key-dir"
    ;;
esac

prepare_key_dir() {
  mkdir -p -- "$key_dir" || fail 8 failed "cannot create $key_dir: check its parent and permissions"
  chmod 700 -- "$key_dir" || fail 8 failed "cannot set the mode of $key_dir to 0700"
  if [ "$flavor" = haproxy ] && [ ! -s "$include_file" ]; then
    # Keys of this node's own, shared with nobody, until the applier writes the fleet's.
    (umask 077 && for _ in 1 2 3; do head -c 80 /dev/urandom | base64 -w 0 && echo; done >"$include_file.tmp" && mv -f -- "$include_file.tmp" "$include_file") ||
      fail 8 failed "cannot write $include_file"
  fi
}

if [ "$prestart" = 1 ]; then
  prepare_key_dir
  summary_action=prepared
  exit 0
fi

[ -n "$config" ] || fail 2 refused "--config is required: the file that holds the TLS server blocks (nginx) or haproxy.cfg"
{ [ -f "$config" ] && [ -r "$config" ]; } || fail 2 refused "cannot read --config $config: check the path"
case "$flavor" in
  nginx) test_cmd=${test_cmd:-nginx -t -q} ;;
  haproxy) test_cmd=${test_cmd:-haproxy -c -q -f $config} ;;
esac

# The Python half reads the config and prints the edited one, or refuses (exit 3) with why.
read -r -d '' EDIT_PY <<'PY' || true
import fnmatch, re, sys

flavor, config_path, key_dir, include_file = sys.argv[1:5]
MARK = "# TLS session ticket keys, managed by apply-ticket-keys.sh"

class Unsafe(Exception):
    pass

def code_of(line):
    """The line without its comment (a # outside quotes)."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#":
            return line[:index]
    return line

def nginx(lines):
    pattern = key_dir + "/*.conf"
    blocks, stack, statement, start_line = [], [], [], None
    for number, line in enumerate(lines):
        for token in re.findall(r"[{};]|\"[^\"]*\"|'[^']*'|[^\s{};]+", code_of(line)):
            if token == "{":
                name = statement[0] if statement else ""
                stack.append(name)
                if name == "server" and (len(stack) < 2 or stack[-2] != "upstream"):
                    blocks.append({"depth": len(stack), "line": number, "listen": None, "included": False})
                statement = []
            elif token == "}":
                if not stack:
                    raise Unsafe("unbalanced braces at line %d" % (number + 1))
                stack.pop()
                statement = []
            elif token == ";":
                words = [word.strip("\"'") for word in statement]
                current = next((block for block in reversed(blocks) if block["depth"] == len(stack) and stack and stack[-1] == "server"), None)
                if words[:1] == ["ssl_session_ticket_key"]:
                    raise Unsafe("line %d sets ssl_session_ticket_key: the managed keys replace such keys; remove those lines, then run again" % (number + 1))
                if words[:2] == ["ssl_session_tickets", "off"]:
                    raise Unsafe("line %d turns session tickets off (ssl_session_tickets off): remove it, then run again" % (number + 1))
                if current is not None and words[:1] == ["listen"] and "ssl" in words[1:] and current["listen"] is None:
                    if start_line != number or code_of(line).split(";", 1)[1].strip():
                        raise Unsafe("the TLS listen at line %d shares its line with other statements: put it on a line of its own, or add `include %s;` to that server block by hand" % (number + 1, pattern))
                    current["listen"] = number
                if current is not None and words[:1] == ["include"] and len(words) > 1 and (words[1] == pattern or fnmatch.fnmatchcase(include_file, words[1])):
                    current["included"] = True
                statement = []
            else:
                if not statement:
                    start_line = number
                statement.append(token)
    if stack:
        raise Unsafe("unbalanced braces: %d block(s) not closed" % len(stack))
    tls = [block for block in blocks if block["listen"] is not None]
    if not tls:
        raise Unsafe("%s has no server block with `listen ... ssl`: give the file that holds the TLS server blocks (--config)" % config_path)
    out = list(lines)
    changed = 0
    for block in sorted(tls, key=lambda block: block["listen"], reverse=True):
        if block["included"]:
            continue
        listen = lines[block["listen"]]
        indent = listen[:len(listen) - len(listen.lstrip())]
        out.insert(block["listen"] + 1, "%sinclude %s;  %s\n" % (indent, pattern, MARK))
        changed += 1
    return out, changed

def haproxy(lines):
    out, changed, tls = [], 0, 0
    for number, line in enumerate(lines):
        code = code_of(line)
        tokens = code.split()
        if tokens[:1] == ["bind"] and "ssl" in tokens:
            tls += 1
            if code.rstrip().endswith("\\"):
                raise Unsafe("the bind line %d continues on the next line: join it, or add `tls-ticket-keys %s` by hand" % (number + 1, include_file))
            if "tls-ticket-keys" in tokens:
                named = tokens[tokens.index("tls-ticket-keys") + 1:tokens.index("tls-ticket-keys") + 2]
                if named != [include_file]:
                    raise Unsafe("the bind line %d already loads tls-ticket-keys %s: remove it, then run again (the managed file replaces it)" % (number + 1, " ".join(named)))
            else:
                rest = line[len(code.rstrip()):]
                line = "%s tls-ticket-keys %s%s" % (code.rstrip(), include_file, rest if rest.strip() else "\n")
                changed += 1
        out.append(line)
    if tls == 0:
        raise Unsafe("%s has no bind line with ssl: give the HAProxy config that terminates TLS (--config)" % config_path)
    return out, changed

try:
    with open(config_path) as handle:
        lines = handle.readlines()
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    edited, changed = (nginx if flavor == "nginx" else haproxy)(lines)
except Unsafe as unsafe:
    print(str(unsafe), file=sys.stderr)
    sys.exit(3)
sys.stdout.write("%d\n" % changed)
sys.stdout.write("".join(edited))
PY

edit_output=$(mktemp)
edit_errors=$(mktemp)
edit_code=0
python3 -c "$EDIT_PY" "$flavor" "$config" "$key_dir" "$include_file" >"$edit_output" 2>"$edit_errors" || edit_code=$?
edit_message=$(cat -- "$edit_errors")
summary_changed=$(head -n 1 -- "$edit_output")
staged=$(mktemp "$(dirname "$config")/.$(basename "$config").new.XXXXXX") || fail 8 failed "cannot write beside $config"
tail -n +2 -- "$edit_output" >"$staged"
rm -f -- "$edit_output" "$edit_errors"
if [ "$edit_code" -ne 0 ]; then
  rm -f -- "$staged"
  [ "$edit_code" -eq 3 ] || fail 8 failed "could not read $config: ${edit_message:-exit $edit_code}"
  summary_changed=0
  fail 3 refused "cannot change $config safely: $edit_message; nothing was changed"
fi

prepare_key_dir
if [ "$tmpfiles_dir" != none ] && [ -d "$tmpfiles_dir" ]; then
  printf 'd %s 0700 root root -\n' "$key_dir" >"$tmpfiles_dir/tls-ticket-keys.conf" ||
    fail 8 failed "cannot write $tmpfiles_dir/tls-ticket-keys.conf"
fi
if [ "$flavor" = haproxy ] && [ "$systemd_dir" != none ] && [ -d "$systemd_dir" ]; then
  install -D -m 0755 -- "$0" /usr/local/lib/tls-ticket-keys/onboard-node.sh || fail 8 failed "cannot install /usr/local/lib/tls-ticket-keys/onboard-node.sh"
  mkdir -p -- "$systemd_dir/haproxy.service.d"
  printf '[Service]\nExecStartPre=/bin/bash /usr/local/lib/tls-ticket-keys/onboard-node.sh --prestart --flavor haproxy --key-dir %s --include %s\n' "$key_dir" "$include_file" \
    >"$systemd_dir/haproxy.service.d/tls-ticket-keys.conf" || fail 8 failed "cannot write the haproxy.service drop-in"
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
fi

if [ "$summary_changed" = 0 ]; then
  rm -f -- "$staged"
  summary_action=unchanged
  exit 0
fi

backup=$(mktemp "$(dirname "$config")/.$(basename "$config").onboard.XXXXXX") || fail 8 failed "cannot write beside $config"
cp -p -- "$config" "$backup" || fail 8 failed "cannot copy $config aside"
if ! { chmod --reference="$config" -- "$staged" && chown --reference="$config" -- "$staged" && mv -f -- "$staged" "$config"; }; then
  rm -f -- "$staged"
  fail 8 failed "cannot replace $config"
fi

if ! test_output=$(bash -c "$test_cmd" 2>&1); then
  mv -f -- "$backup" "$config" && backup=
  fail 5 restored "config test '$test_cmd' failed after adding the managed keys: $(printf '%s' "$test_output" | tail -n 3 | tr '\n' ' '); $config was restored as it was"
fi
summary_action=onboarded
exit 0
