#!/usr/bin/env bash
# Prepares a node once for managed TLS session ticket keys: the key directory on a memory
# filesystem (recreated at boot), the server's config loading the managed keys, checked with
# the server's own config test. Refuses, changing nothing, when the config cannot be changed
# safely. Prints exactly one JSON summary line on stdout on every path.
#
# Onboarding also installs the boot-time fetch: this script and the applier under
# --install-dir, and a systemd drop-in that runs them before the server starts.
#
# With --prestart it does what a node needs before its server starts (systemd ExecStartPre):
# the key directory, then the fleet's current key set from --fetch-cmd, applied with no
# reload, so that a node that rebooted, was replaced or was stopped through rotations resumes
# its peers' tickets from its first connection. When the store cannot be reached within
# --fetch-wait seconds the server starts anyway (availability first) with what it has: the set
# still in the key directory, or keys of its own (for HAProxy, which refuses to start without
# its tls-ticket-keys file, three random ones) until the association converges it. The summary
# (keySource: store, kept or own) and a line on stderr say which. A prestart exits 0 unless the
# key directory cannot be prepared.
#
# Exit codes:
#   0  onboarded, or already onboarded (nothing changed)
#   2  usage error; nothing changed
#   3  the config or the key directory cannot be changed safely; nothing changed
#   5  the config test failed after the change; the config was restored byte for byte
#   8  could not write; nothing changed
set -euo pipefail
ulimit -c 0 # a prestart holds the key set: a crash must not write it to a core file

usage() {
  cat <<'EOF'
Usage: onboard-node.sh --config FILE [options]
  --flavor nginx|haproxy      server flavor (default nginx)
  --config FILE               nginx: the file with the TLS server blocks; haproxy: haproxy.cfg
  --key-dir DIR               the managed key directory (default /run/tls-ticket-keys)
  --include FILE              the managed include (default: ticket-keys.conf or tls-ticket-keys in DIR)
  --test-cmd CMD              config test (default: nginx -t -q; haproxy -c -q -f FILE)
  --config-dump-cmd CMD       prints the config the server loads (the applier's default if not given)
  --fetch-cmd CMD             prints the fleet's current key set (AWSCURRENT) on stdout: the boot-time
                              fetch; exit 254 means the store answered with an error (not worth waiting)
  --fetch-wait SECONDS        how long a start waits for the store (default 30)
  --install-dir DIR           where the boot-time fetch is installed (default /usr/local/lib/tls-ticket-keys)
  --tmpfiles-dir DIR          where systemd-tmpfiles reads its config (default /etc/tmpfiles.d; none to skip)
  --systemd-dir DIR           where the ExecStartPre drop-in goes (default /etc/systemd/system; none to skip)
  --allow-persistent-key-dir  accept a key directory on a persistent filesystem
  --prestart                  before a start: prepare the key directory and fetch the current keys
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
dump_cmd=
fetch_cmd=
fetch_wait=30
install_dir=/usr/local/lib/tls-ticket-keys
summary_key_source=
summary_generation=
summary_fetch_error=
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
  SUMMARY_KEY_SOURCE=$summary_key_source SUMMARY_GENERATION=$summary_generation SUMMARY_FETCH_ERROR=$summary_fetch_error \
    python3 -c '
import json, os
e = os.environ
out = {"action": e["SUMMARY_ACTION"], "flavor": e["SUMMARY_FLAVOR"], "exitCode": int(e["SUMMARY_EXIT"]),
       "config": e["SUMMARY_CONFIG"], "changed": int(e["SUMMARY_CHANGED"]), "keyDir": e["SUMMARY_KEY_DIR"]}
if e["SUMMARY_STORAGE"]:
    out["keyStorage"] = e["SUMMARY_STORAGE"]
    out["keysInMemory"] = e["SUMMARY_STORAGE"] in ("tmpfs", "ramfs")
if e["SUMMARY_KEY_SOURCE"]:
    out["keySource"] = e["SUMMARY_KEY_SOURCE"]
if e["SUMMARY_GENERATION"]:
    out["generation"] = int(e["SUMMARY_GENERATION"])
if e["SUMMARY_FETCH_ERROR"]:
    out["fetchError"] = e["SUMMARY_FETCH_ERROR"]
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
    --flavor | --config | --key-dir | --include | --test-cmd | --config-dump-cmd | --fetch-cmd | --fetch-wait | --install-dir | --tmpfiles-dir | --systemd-dir)
      [ $# -ge 2 ] || fail 2 refused "option $1 needs a value (see --help)"
      case "$1" in
        --flavor) flavor=$2 ;;
        --config) config=$2 ;;
        --key-dir) key_dir=$2 ;;
        --include) include_file=$2 ;;
        --test-cmd) test_cmd=$2 ;;
        --config-dump-cmd) dump_cmd=$2 ;;
        --fetch-cmd) fetch_cmd=$2 ;;
        --fetch-wait) fetch_wait=$2 ;;
        --install-dir) install_dir=$2 ;;
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
[[ "$install_dir" =~ ^/[A-Za-z0-9._/-]+$ ]] || fail 2 refused "--install-dir must be an absolute path of letters, digits and ._/- (got $install_dir): systemd reads it in the drop-in"
case "$fetch_wait" in '' | *[!0-9]*) fail 2 refused "--fetch-wait must be a whole number of seconds (got $fetch_wait)" ;; esac
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

# The applier checks that only root can write the key directory and its parents, then makes it.
make_key_dir() {
  local answer code=0
  applier_args
  answer=$("${applier_cmd[@]}" --prepare-key-dir 2>/dev/null) || code=$?
  case "$code" in
    0) ;;
    2) fail 3 refused "$(summary_field "$answer" error)" ;;
    *) fail 8 failed "$(summary_field "$answer" error)" ;;
  esac
}

write_own_haproxy_keys() {
  if [ "$flavor" = haproxy ] && [ ! -s "$include_file" ]; then
    # Keys of this node's own, shared with nobody, until the applier writes the fleet's.
    local staged
    staged=$(mktemp "$(dirname "$include_file")/.$(basename "$include_file").tmp.XXXXXX") || fail 8 failed "cannot write beside $include_file"
    { for _ in 1 2 3; do head -c 80 /dev/urandom | base64 -w 0 && echo; done >"$staged" && mv -f -- "$staged" "$include_file"; } ||
      { rm -f -- "$staged"; fail 8 failed "cannot write $include_file"; }
  fi
}

applier_args() {
  # A short lock wait: the whole prestart must end well inside systemd's start timeout (90 s).
  applier_cmd=(bash "$(dirname "$0")/apply-ticket-keys.sh" --flavor "$flavor" --key-dir "$key_dir" --include "$include_file" --lock-timeout 10)
  [ -z "$test_cmd" ] || applier_cmd+=(--test-cmd "$test_cmd")
  [ -z "$dump_cmd" ] || applier_cmd+=(--config-dump-cmd "$dump_cmd")
  [ "$allow_persistent" = 0 ] || applier_cmd+=(--allow-persistent-key-dir)
}

# A field of the applier's one-line JSON summary, or nothing.
summary_field() {
  python3 -c 'import json, sys; value = json.loads(sys.argv[1]).get(sys.argv[2]); print("" if value is None else value)' "$1" "$2" 2>/dev/null || true
}

# Milliseconds since boot, from /proc/uptime: monotonic (a clock stepped at boot does not
# stretch the wait), and read the same way by every bash.
now_ms() {
  local uptime _
  read -r uptime _ </proc/uptime
  echo $((${uptime%.*} * 1000 + 10#${uptime#*.} * 10))
}

# Fetches the current key set, waiting up to --fetch-wait seconds while the store cannot be
# reached, and applies it with no reload. Sets summary_key_source=store on success, and
# summary_fetch_error otherwise.
fetch_and_apply() {
  local deadline=$(($(now_ms) + fetch_wait * 1000)) delay_ms=1000 left pause code keyset errors failure answer
  errors=$(mktemp)
  while :; do
    left=$((deadline - $(now_ms)))
    code=0
    keyset=$(timeout --kill-after=2 "$(((left > 1000 ? left : 1000) / 1000))" bash -c "$fetch_cmd" 2>"$errors") || code=$?
    # 254: the store answered with an error (AWS CLI's return code for a service error), so
    # waiting would not change its answer; anything else may be a network still coming up.
    case "$code" in 0 | 254) break ;; esac
    left=$((deadline - $(now_ms)))
    [ "$left" -gt 0 ] || break
    pause=$((left < delay_ms ? left : delay_ms))
    sleep "$((pause / 1000)).$(printf '%03d' $((pause % 1000)))"
    delay_ms=$((delay_ms * 2))
  done
  failure=$(tail -n 1 -- "$errors" | cut -c 1-300 || true)
  rm -f -- "$errors"
  if [ "$code" -ne 0 ]; then
    summary_fetch_error="could not get the current key set ($failure; exit $code$([ "$code" -eq 254 ] || echo ", after waiting up to ${fetch_wait} s"))"
    return
  fi
  applier_args
  code=0
  answer=$(printf '%s\n' "$keyset" | "${applier_cmd[@]}" --before-start 2>/dev/null) || code=$?
  keyset=
  if [ "$code" -eq 0 ]; then
    summary_key_source=store
    summary_generation=$(summary_field "$answer" generation)
  else
    summary_fetch_error="the current key set was not applied: $(summary_field "$answer" error)"
  fi
}

# What the server starts with when the fetch did not work: the set the key directory still
# holds (a restart without a reboot), or keys of its own.
fall_back() {
  local answer
  applier_args
  answer=$("${applier_cmd[@]}" --status 2>/dev/null) || true
  if [ "$(summary_field "$answer" action)" = active ]; then
    summary_key_source=kept
    summary_generation=$(summary_field "$answer" generation)
  else
    summary_key_source=own
  fi
}

if [ "$prestart" = 1 ]; then
  make_key_dir
  [ -z "$fetch_cmd" ] || fetch_and_apply
  [ "$summary_key_source" = store ] || fall_back
  write_own_haproxy_keys
  case "$summary_key_source" in
    store) echo "tls-ticket-keys: $flavor starts on generation $summary_generation, the fleet's current key set" >&2 ;;
    kept) echo "tls-ticket-keys: $flavor starts on generation $summary_generation, the set its key directory kept${summary_fetch_error:+ ($summary_fetch_error)}; the association converges it" >&2 ;;
    own) echo "tls-ticket-keys: $flavor starts on keys of its own${summary_fetch_error:+ ($summary_fetch_error)}; the association converges it" >&2 ;;
  esac
  summary_action=prepared
  exit 0
fi

[ -n "$config" ] || fail 2 refused "--config is required: the file that holds the TLS server blocks (nginx) or haproxy.cfg"
{ [ -f "$config" ] && [ -r "$config" ]; } || fail 2 refused "cannot read --config $config: check the path"
# A config that is a symlink (sites-enabled/default) is edited where it points, and stays a link.
config_file=$(realpath -e -- "$config")
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
    if re.search(r"[*?\[\]\s;'\"{}#$]", include_file):
        raise Unsafe("--include %s has characters nginx would read as a pattern or syntax: use a plain file name" % include_file)
    # The include names the managed file alone, as a pattern that matches nothing else, so that
    # nginx still starts with an empty key directory and never loads a file planted beside it.
    pattern = include_file[:-1] + "[" + include_file[-1] + "]"
    broad = key_dir + "/*.conf"  # what earlier versions added
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
                    if words[1] == broad and MARK in line:
                        current["broad"] = number
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
        if "broad" in block:
            out[block["broad"]] = out[block["broad"]].replace("include %s;" % broad, "include %s;" % pattern, 1)
            changed += 1
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
python3 -c "$EDIT_PY" "$flavor" "$config_file" "$key_dir" "$include_file" >"$edit_output" 2>"$edit_errors" || edit_code=$?
edit_message=$(cat -- "$edit_errors")
summary_changed=$(head -n 1 -- "$edit_output")
staged=$(mktemp "$(dirname "$config_file")/.$(basename "$config_file").new.XXXXXX") || fail 8 failed "cannot write beside $config"
tail -n +2 -- "$edit_output" >"$staged"
rm -f -- "$edit_output" "$edit_errors"
if [ "$edit_code" -ne 0 ]; then
  rm -f -- "$staged"
  [ "$edit_code" -eq 3 ] || fail 8 failed "could not read $config: ${edit_message:-exit $edit_code}"
  summary_changed=0
  fail 3 refused "cannot change $config safely: $edit_message; nothing was changed"
fi

# What runs at every boot: systemd-tmpfiles recreates the key directory, and the drop-in runs
# the prestart (this script, installed with the applier) before the server starts.
install_boot_fetch() {
  if [ "$tmpfiles_dir" != none ] && [ -d "$tmpfiles_dir" ]; then
    printf 'd %s 0700 root root -\n' "$key_dir" >"$tmpfiles_dir/tls-ticket-keys.conf" ||
      fail 8 failed "cannot write $tmpfiles_dir/tls-ticket-keys.conf"
  fi
  [ "$systemd_dir" != none ] && [ -d "$systemd_dir" ] || return 0
  local script target prestart=(--prestart --flavor "$flavor" --key-dir "$key_dir" --include "$include_file" --test-cmd "$test_cmd" --fetch-wait "$fetch_wait")
  [ -z "$dump_cmd" ] || prestart+=(--config-dump-cmd "$dump_cmd")
  [ -z "$fetch_cmd" ] || prestart+=(--fetch-cmd "$fetch_cmd")
  [ "$allow_persistent" = 0 ] || prestart+=(--allow-persistent-key-dir)
  for script in "$0" "$(dirname "$0")/apply-ticket-keys.sh"; do
    target=$install_dir/$(basename "$script")
    [ "$script" -ef "$target" ] || install -D -m 0755 -- "$script" "$target" ||
      fail 8 failed "cannot install $target: apply-ticket-keys.sh must sit beside onboard-node.sh"
  done
  # The applier's program, whole: a file an older version had does not stay behind.
  local here file
  here=$(dirname "$0")
  if ! [ "$here/ticket_keys" -ef "$install_dir/ticket_keys" ]; then
    rm -rf -- "$install_dir/ticket_keys"
    while IFS= read -r file; do
      install -D -m 0644 -- "$here/$file" "$install_dir/$file" ||
        fail 8 failed "cannot install $install_dir/$file: the applier's ticket_keys/ must sit beside onboard-node.sh"
    done < <(cd -- "$here" && find ticket_keys -name '*.py' ! -path '*/__pycache__/*')
  fi
  # A drop-in's ExecStartPre runs after the unit's own. nginx's config test passes with an empty
  # key directory; an HAProxy unit's own config check (Fedora's has one) fails on the missing
  # keys file. So for HAProxy the drop-in replaces the unit's ExecStartPre with the prestart,
  # followed by the config test.
  local reset='' run=exec
  [ "$flavor" != haproxy ] || { reset='ExecStartPre='$'\n'; run=''; }
  {
    echo '#!/bin/bash'
    echo "# Written by onboard-node.sh: the boot-time fetch, run before $flavor starts (systemd ExecStartPre)."
    printf '%s/bin/bash %q' "${run:+$run }" "$install_dir/onboard-node.sh"
    printf ' %q' "${prestart[@]}"
    [ -n "$run" ] || printf ' || exit'
    echo
    [ -n "$run" ] || printf 'exec /bin/bash -c %q\n' "$test_cmd"
  } >"$install_dir/before-start-$flavor.sh" || fail 8 failed "cannot write $install_dir/before-start-$flavor.sh"
  mkdir -p -- "$systemd_dir/$flavor.service.d" || fail 8 failed "cannot create $systemd_dir/$flavor.service.d"
  printf '# Written by onboard-node.sh: the fleet'"'"'s current TLS ticket keys before %s starts.\n[Unit]\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\n%sExecStartPre=/bin/bash %s/before-start-%s.sh\n' \
    "$flavor" "$reset" "$install_dir" "$flavor" >"$systemd_dir/$flavor.service.d/tls-ticket-keys.conf" ||
    fail 8 failed "cannot write the $flavor.service drop-in in $systemd_dir"
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
}

make_key_dir
write_own_haproxy_keys

if [ "$summary_changed" = 0 ]; then
  rm -f -- "$staged"
  install_boot_fetch
  summary_action=unchanged
  exit 0
fi

backup=$(mktemp "$(dirname "$config_file")/.$(basename "$config_file").onboard.XXXXXX") || fail 8 failed "cannot write beside $config"
cp -p -- "$config_file" "$backup" || fail 8 failed "cannot copy $config aside"
if ! { chmod --reference="$config_file" -- "$staged" && chown --reference="$config_file" -- "$staged" && mv -f -- "$staged" "$config_file"; }; then
  rm -f -- "$staged"
  fail 8 failed "cannot replace $config"
fi

if ! test_output=$(bash -c "$test_cmd" 2>&1); then
  mv -f -- "$backup" "$config_file" && backup=
  fail 5 restored "config test '$test_cmd' failed after adding the managed keys: $(printf '%s' "$test_output" | tail -n 3 | tr '\n' ' '); $config was restored as it was"
fi
install_boot_fetch
summary_action=onboarded
exit 0
