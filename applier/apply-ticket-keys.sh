#!/usr/bin/env bash
# Applies a TLS session ticket key set to one server: validates it fully, writes the key
# files and the server's include file atomically, tests the config, reloads, and restores
# the previous set if the test or the reload fails. Prints exactly one JSON summary line on
# stdout, on every path, and never key material. Needs bash, coreutils and python3.
#
# Exit codes:
#   0  applied, or that generation was already active (nothing done)
#   2  usage error: an option is missing or wrong; nothing touched
#   3  the key set is invalid; nothing touched
#   4  the key set conflicts with the active one (older generation without
#      --allow-downgrade, or the same generation with other keys); nothing touched
#   5  the config test failed; the previous set was restored
#   6  the reload (or the HAProxy runtime API update) failed; the previous set was restored
#   7  the previous set could not be restored: the node needs attention
#   8  could not lock or write (permissions, disk); the previous set is still in force
#   9  the server's config does not load the managed keys (or could not be dumped); the
#      previous set was restored before any reload
#   other: an unexpected failure; the summary's error says where
set -euo pipefail
set -o errtrace # the ERR trap below also sees failures inside functions

usage() {
  cat <<'EOF'
Usage: apply-ticket-keys.sh [options] [--input FILE|-]
  --flavor nginx|haproxy  server flavor (default nginx)
  --key-dir DIR           directory for the key files (created 0700), on a memory filesystem
  --include FILE          nginx: the file its config includes; haproxy: the tls-ticket-keys file
  --test-cmd CMD          config test (default: nginx -t -q; haproxy -c -q -f /etc/haproxy/haproxy.cfg)
  --config-dump-cmd CMD   prints the config the server loads, to check that it loads the managed
                          keys (default: nginx -T; cat /etc/haproxy/haproxy.cfg)
  --reload-cmd CMD        reload (default: nginx -s reload; systemctl reload haproxy)
  --runtime-socket PATH   haproxy: its runtime API socket (admin level); rotate without a reload
  --input FILE|-          key set JSON (default: standard input)
  --allow-downgrade       apply a generation older than the active one
  --allow-persistent-key-dir
                          accept a key directory or include on a persistent filesystem, where keys
                          outlive their rotation in backups and snapshots
  --lock-timeout SECONDS  wait this long for another run to finish (default: 60)
  --before-start          the server is not running yet (systemd ExecStartPre): write and test the
                          keys, and leave loading them to its start (no reload, no runtime API)
  --status                print the active generation and key names, change nothing
EOF
}

summary_action=failed
summary_generation=
summary_keys=
summary_active_generation=
summary_error=
summary_key_storage=
input_file=-
flavor=nginx
key_dir=
include_file=
test_cmd=
dump_cmd=
reload_cmd=
allow_downgrade=0
allow_persistent=0
lock_timeout=60
runtime_socket=
summary_via=
status_only=0
before_start=0
stage_dir=
config_dump=
include_tmp=
include_rollback=
command_output=

# shellcheck disable=SC2317 # invoked by the EXIT trap
print_summary() {
  local code=$?
  [ -n "$command_output" ] && rm -f -- "$command_output"
  SUMMARY_ACTION=$summary_action SUMMARY_GENERATION=$summary_generation SUMMARY_KEYS=$summary_keys \
  SUMMARY_ACTIVE=$summary_active_generation SUMMARY_ERROR=$summary_error SUMMARY_FLAVOR=$flavor SUMMARY_EXIT=$code SUMMARY_VIA=$summary_via SUMMARY_STORAGE=$summary_key_storage \
    python3 -c '
import json, os
e = os.environ
out = {"action": e["SUMMARY_ACTION"], "flavor": e["SUMMARY_FLAVOR"], "exitCode": int(e["SUMMARY_EXIT"])}
if e["SUMMARY_GENERATION"]:
    out["generation"] = int(e["SUMMARY_GENERATION"])
out["keys"] = e["SUMMARY_KEYS"].split(",") if e["SUMMARY_KEYS"] else []
if e["SUMMARY_ACTIVE"]:
    out["previousGeneration"] = int(e["SUMMARY_ACTIVE"])
if e["SUMMARY_VIA"]:
    out["via"] = e["SUMMARY_VIA"]
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
trap 'summary_error=${summary_error:-"unexpected failure at line $LINENO of apply-ticket-keys.sh"}' ERR

fail() {
  local code=$1 action=$2
  shift 2
  summary_action=$action
  summary_error="$*"
  echo "apply-ticket-keys: $*" >&2
  exit "$code"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --flavor | --key-dir | --include | --test-cmd | --config-dump-cmd | --reload-cmd | --input | --lock-timeout | --runtime-socket)
      [ $# -ge 2 ] || fail 2 refused "option $1 needs a value (see --help)"
      case "$1" in
        --flavor) flavor=$2 ;;
        --key-dir) key_dir=$2 ;;
        --include) include_file=$2 ;;
        --test-cmd) test_cmd=$2 ;;
        --config-dump-cmd) dump_cmd=$2 ;;
        --reload-cmd) reload_cmd=$2 ;;
        --input) input_file=$2 ;;
        --lock-timeout) lock_timeout=$2 ;;
        --runtime-socket) runtime_socket=$2 ;;
      esac
      shift 2
      ;;
    --allow-downgrade) allow_downgrade=1; shift ;;
    --allow-persistent-key-dir) allow_persistent=1; shift ;;
    --status) status_only=1; shift ;;
    --before-start) before_start=1; shift ;;
    -h | --help) usage >&2; summary_action=help; exit 0 ;;
    *) fail 2 refused "unknown option $1 (see --help)" ;;
  esac
done

case "$flavor" in
  nginx)
    test_cmd=${test_cmd:-nginx -t -q}
    dump_cmd=${dump_cmd:-nginx -T}
    reload_cmd=${reload_cmd:-nginx -s reload}
    ;;
  haproxy)
    test_cmd=${test_cmd:-haproxy -c -q -f /etc/haproxy/haproxy.cfg}
    dump_cmd=${dump_cmd:-cat /etc/haproxy/haproxy.cfg}
    reload_cmd=${reload_cmd:-systemctl reload haproxy}
    ;;
  *) fail 2 refused "flavor $flavor is not supported: use --flavor nginx or --flavor haproxy" ;;
esac
[ -z "$runtime_socket" ] || [ "$flavor" = haproxy ] || fail 2 refused "--runtime-socket is for --flavor haproxy only"
[ -z "$runtime_socket" ] || [ "$before_start" = 0 ] || fail 2 refused "--before-start runs before the server listens on its runtime API: drop --runtime-socket"
[ -n "$key_dir" ] || fail 2 refused "--key-dir is required: the directory that holds the key files"
[ -n "$include_file" ] || fail 2 refused "--include is required: the file the server's config includes"
case "$lock_timeout" in '' | *[!0-9]*) fail 2 refused "--lock-timeout must be a whole number of seconds" ;; esac
# One spelling of each path, so a generation directory is never mistaken for a stale one.
key_dir=$(realpath -m -- "$key_dir")
include_file=$(realpath -m -s -- "$include_file")
[ "$(dirname "$include_file")" = "$key_dir" ] || [ -d "$(dirname "$include_file")" ] ||
  fail 2 refused "the directory of --include $include_file does not exist: create it or fix the path"

# The filesystem type of a path, or of its nearest existing ancestor when it does not exist yet.
filesystem_of() {
  local path=$1
  while [ ! -e "$path" ]; do path=$(dirname "$path"); done
  stat -f -c %T -- "$path"
}
is_memory_filesystem() {
  case "$1" in tmpfs | ramfs) return 0 ;; *) return 1 ;; esac
}
summary_key_storage=$(filesystem_of "$key_dir")
if [ "$allow_persistent" = 0 ]; then
  is_memory_filesystem "$summary_key_storage" ||
    fail 2 refused "--key-dir $key_dir is on $summary_key_storage, a persistent filesystem: keys there outlive their rotation in backups and snapshots; use a directory on tmpfs (such as /run/tls-ticket-keys) or pass --allow-persistent-key-dir to accept that on purpose"
  include_storage=$(filesystem_of "$include_file")
  is_memory_filesystem "$include_storage" ||
    fail 2 refused "--include $include_file is on $include_storage, a persistent filesystem: after a reboot it would name key files that are gone (and HAProxy's holds the keys themselves); put it in the key directory, or pass --allow-persistent-key-dir"
fi

# The Python half validates the key set, compares it with the active one and writes the new
# generation's files. It reads the key set from stdin and answers with one line of fields
# separated by \x1f (unit separator), so that empty fields survive `read`.
read -r -d '' KEYSET_PY <<'PY' || true
import base64, binascii, fcntl, fnmatch, json, os, re, socket, sys, tempfile, time

mode, flavor, key_dir, include_file, allow_downgrade, lock_timeout, runtime_socket = sys.argv[1:8]
STATE_FILE = os.path.join(key_dir, "active.json")
SEP = "\x1f"
HAPROXY_SLOTS = 3  # TLS_TICKETS_NO, HAProxy's build-time number of ticket keys per file
FORMAT, VERSION, LENGTHS = "tls-ticket-keyset", 1, (80, 48)
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
TODO = "use a key set written by `ticket-keys init`/`rotate` or by the rotation function"

class Refused(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code

def invalid(message):
    raise Refused(3, message)

def expected_state(index):
    return "current" if index == 0 else "next" if index == 1 else "previous"

def validate(text):
    if text.strip() == "":
        invalid("key set is empty: pipe the key set JSON to standard input or pass --input FILE")
    try:
        doc = json.loads(text)
    except ValueError:
        invalid("key set is not valid JSON: " + TODO)
    if not isinstance(doc, dict):
        invalid("key set is not a JSON object: " + TODO)
    if doc.get("format") != FORMAT:
        invalid("key set format %s is unknown: expected \"%s\"" % (json.dumps(doc.get("format")), FORMAT))
    if doc.get("version") != VERSION or isinstance(doc.get("version"), bool):
        invalid("key set version %s is not supported: this applier reads version %d; upgrade it or rewrite the set" % (json.dumps(doc.get("version")), VERSION))
    unknown = sorted(set(doc) - {"format", "version", "generation", "keyLength", "keys"})
    if unknown:
        invalid("key set has unknown field(s) %s: %s" % (", ".join(unknown), TODO))
    generation, key_length, keys = doc.get("generation"), doc.get("keyLength"), doc.get("keys")
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 1 or generation > 2**53 - 1:
        invalid("key set generation %s is not a positive integer: %s" % (json.dumps(generation), TODO))
    if key_length not in LENGTHS or isinstance(key_length, bool):
        invalid("key set keyLength %s is not supported: it must be 80 or 48" % json.dumps(key_length))
    if not isinstance(keys, list):
        invalid("key set has no \"keys\" array: " + TODO)
    if len(keys) == 0:
        invalid("key set has no current key: a set needs a current and a next key")
    if len(keys) == 1:
        invalid("key set has no next key: a set needs a current and a next key")
    names, materials = [], []
    order = "keys must be ordered current, next, then previous keys"
    for index, key in enumerate(keys):
        where = "key %d" % (index + 1)
        if not isinstance(key, dict):
            invalid("%s is not an object: %s" % (where, TODO))
        extra = sorted(set(key) - {"name", "state", "createdAt", "material"})
        if extra:
            invalid("%s has unknown field(s) %s: %s" % (where, ", ".join(extra), TODO))
        for field in ("name", "state", "createdAt", "material"):
            if not isinstance(key.get(field), str):
                invalid("%s has no \"%s\" string: %s" % (where, field, TODO))
        name, state = key["name"], key["state"]
        if state != expected_state(index):
            if index == 0:
                invalid("key set has no current key first (key 1 is \"%s\"): %s" % (state, order))
            if index == 1:
                invalid("key set has no next key second (key 2 is \"%s\"): %s" % (state, order))
            invalid("%s has state \"%s\" where \"previous\" belongs: %s" % (where, state, order))
        if not ISO.match(key["createdAt"]):
            invalid("%s (%s) has createdAt that is not an ISO 8601 UTC time: %s" % (where, name, TODO))
        material = key["material"]
        try:
            if len(material) % 4 or not B64.match(material):
                raise ValueError()
            raw = base64.b64decode(material, validate=True)
            if base64.b64encode(raw).decode() != material:
                raise ValueError()
        except (ValueError, binascii.Error):
            invalid("%s (%s) material is not valid base64: %s" % (where, name, TODO))
        if len(raw) != key_length:
            invalid("%s (%s) is %d bytes but the set's keyLength is %d: every key must have the same length" % (where, name, len(raw), key_length))
        if name != raw[:16].hex():
            invalid("%s name %s does not match its material (a name is the hex of the first 16 bytes): %s" % (where, name, TODO))
        if name in names:
            invalid("key set holds key %s twice: every key must be distinct" % name)
        names.append(name)
        materials.append(raw)
    if flavor == "haproxy" and len(names) > HAPROXY_SLOTS:
        invalid("key set keeps %d previous keys but HAProxy holds %d keys (previous, current, next): rotate less often or shorten the ticket lifetime so that one previous key covers it (ticket lifetime no longer than the rotation interval)" % (len(names) - 2, HAPROXY_SLOTS))
    return generation, names, materials

def haproxy_order(items):
    """The set's order (current, next, previous newest first) as HAProxy's file wants it:
    previous, current, next. The file needs all three slots: a set with no previous key
    repeats its current key first."""
    ordered = (list(reversed(items[2:])) + items[:2])[-HAPROXY_SLOTS:]
    return [items[0]] * (HAPROXY_SLOTS - len(ordered)) + ordered

def haproxy_layout(raw):
    """80-byte keys: the set holds name|hmac|aes (nginx's layout); HAProxy reads name|aes|hmac."""
    return raw[:16] + raw[48:] + raw[16:48] if len(raw) == 80 else raw

def key_file_name(index, name):
    return "%02d-%s.key" % (index, name)

def render_include(generation, names, directory):
    """nginx: an include naming the key files; HAProxy: the keys themselves, one base64 line each."""
    if flavor == "nginx":
        lines = ["# Managed by apply-ticket-keys.sh: generation %d. Do not edit; the next rotation replaces it." % generation]
        lines += ["ssl_session_ticket_key %s;" % os.path.join(directory, key_file_name(i, n)) for i, n in enumerate(names)]
        return "\n".join(lines) + "\n"
    keys = []
    for index, name in enumerate(names):
        with open(os.path.join(directory, key_file_name(index, name)), "rb") as handle:
            keys.append(haproxy_layout(handle.read()))
    return "".join(base64.b64encode(key).decode() + "\n" for key in haproxy_order(keys))

def read_state():
    try:
        with open(STATE_FILE) as handle:
            state = json.load(handle)
        return state["generation"], state["keys"], state["dir"]
    except (OSError, ValueError, KeyError, TypeError):
        return None

def private(path):
    return os.stat(path).st_mode & 0o777 == 0o600

def active_set_intact(state):
    """The state file names a generation whose include and key files are all still in place,
    and every file holding key material is still readable by its owner only."""
    generation, names, directory = state
    try:
        with open(include_file) as handle:
            if handle.read() != render_include(generation, names, directory):
                return False
        if flavor == "haproxy" and not private(include_file):
            return False
        for index, name in enumerate(names):
            path = os.path.join(directory, key_file_name(index, name))
            with open(path, "rb") as handle:
                if handle.read(16).hex() != name or not private(path):
                    return False
    except OSError:
        return False
    return True

def active_materials(state):
    _, names, directory = state
    out = []
    for index, name in enumerate(names):
        with open(os.path.join(directory, key_file_name(index, name)), "rb") as handle:
            out.append(handle.read())
    return out

def referenced_dir():
    try:
        with open(include_file) as handle:
            for line in handle:
                match = re.match(r"^ssl_session_ticket_key (.+)/[^/]+;$", line.strip())
                if match:
                    return match.group(1)
    except OSError:
        pass
    return None

def remove_leftovers(keep):
    """Removes what a run killed part-way left behind: staged generations and temp files."""
    for entry in os.listdir(key_dir):
        path = os.path.join(key_dir, entry)
        if entry.startswith("gen-") and path not in keep and os.path.isdir(path):
            for child in os.listdir(path):
                os.unlink(os.path.join(path, child))
            os.rmdir(path)
    include_dir, base = os.path.split(include_file)
    for entry in os.listdir(include_dir):
        if entry.startswith(".%s.tmp." % base):
            os.unlink(os.path.join(include_dir, entry))

def write_file(path, data, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)

def prepare(generation, names, materials):
    state = read_state()
    if state is not None:
        active_generation, active_names, _ = state
        intact = active_set_intact(state)
        if generation < active_generation and allow_downgrade != "1":
            raise Refused(4, "generation %d is older than the active generation %d: nothing changed; pass --allow-downgrade to go back on purpose" % (generation, active_generation))
        if generation == active_generation:
            if names != active_names or (intact and materials != active_materials(state)):
                raise Refused(4, "generation %d is already active with other keys: two writers made different sets of one generation; nothing changed, find the other writer and rotate again" % generation)
            if intact and runtime_socket and running_keys_differ():
                intact = False  # the file is right but HAProxy runs other keys: apply again to repair
            if intact:
                # A run killed after it recorded this generation may have left the older one behind.
                remove_leftovers({state[2]})
                return "unchanged", "", "", ""
    keep = {d for d in (referenced_dir(), state[2] if state else None) if d}
    remove_leftovers(keep)
    stage = tempfile.mkdtemp(prefix="gen-%d." % generation, dir=key_dir)
    for index, (name, raw) in enumerate(zip(names, materials)):
        write_file(os.path.join(stage, key_file_name(index, name)), raw, 0o600)
    dir_fd = os.open(stage, os.O_RDONLY)
    os.fsync(dir_fd)
    os.close(dir_fd)
    include_dir, base = os.path.split(include_file)
    write_file(os.path.join(stage, "state.json"), json.dumps({"generation": generation, "keys": names, "dir": stage}).encode(), 0o600)
    fd, include_tmp = tempfile.mkstemp(prefix=".%s.tmp." % base, dir=include_dir)
    os.write(fd, render_include(generation, names, stage).encode())
    # HAProxy's file holds the keys themselves.
    os.fchmod(fd, 0o600 if flavor == "haproxy" else 0o644)
    os.fsync(fd)
    os.close(fd)
    return "apply", stage, include_tmp, state[0] if state else ""

class RuntimeFailure(Exception):
    pass

def runtime_call(command):
    """One command on HAProxy's runtime API. Replies can hold key material: never print them."""
    try:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(10)
        connection.connect(runtime_socket)
        connection.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        connection.close()
    except OSError as error:
        raise RuntimeFailure("the runtime API at %s did not answer '%s': %s" % (runtime_socket, command.split(" ")[0] + " " + command.split(" ")[1], error.strerror or error))
    return b"".join(chunks).decode(errors="replace")

def running_keys():
    reply = runtime_call("show tls-keys %s" % include_file)
    keys = [line.split(" ", 1)[1].strip() for line in reply.splitlines() if re.match(r"^\d+\.\d+ ", line)]
    if not keys:
        raise RuntimeFailure("HAProxy lists no ticket keys for %s: is it the file of a bind line's tls-ticket-keys?" % include_file)
    return keys

def sync_running(target):
    """Makes the running keys equal `target` (oldest first) with as few `set ssl tls-key` calls
    as the overlap allows: each call appends a key and drops the oldest."""
    running = running_keys()
    for shift in range(len(running) + 1):
        if running[shift:] == target[:len(running) - shift]:
            break
    for key in target[len(running) - shift:]:
        if "TLS ticket key updated" not in runtime_call("set ssl tls-key %s %s" % (include_file, key)):
            raise RuntimeFailure("HAProxy refused 'set ssl tls-key' for %s" % include_file)
    if running_keys() != target:
        raise RuntimeFailure("HAProxy's running keys differ from %s after the update" % include_file)

def running_keys_differ():
    try:
        with open(include_file) as handle:
            return running_keys() != handle.read().split()
    except (OSError, RuntimeFailure):
        return True

def runtime_update():
    """Exit 0: running keys equal the new file. 11: failed, the previous keys run again. 12: failed, unknown."""
    with open(include_file) as handle:
        target = handle.read().split()
    previous = running_keys()
    try:
        sync_running(target)
    except RuntimeFailure as failure:
        try:
            sync_running(previous)
        except RuntimeFailure:
            print("%s; restoring the previous keys through the runtime API failed too" % failure, file=sys.stderr)
            return 12
        print("%s; the previous keys run again" % failure, file=sys.stderr)
        return 11
    print(SEP.join(["synced", "", "", "", "", ""]))
    return 0

def runtime_check():
    """Before anything is touched: the socket answers and this HAProxy holds as many keys as the file."""
    try:
        count = len(running_keys())
    except RuntimeFailure as failure:
        raise Refused(2, "%s: check --runtime-socket (HAProxy's 'stats socket ... level admin')" % failure)
    if count != HAPROXY_SLOTS:
        raise Refused(3, "this HAProxy holds %d ticket keys per file, but the applier writes %d (previous, current, next): use an HAProxy built with the default TLS_TICKETS_NO" % (count, HAPROXY_SLOTS))

def config_loads_keys(dump):
    """nginx: an include whose path or pattern matches the include file (nginx -T prints every
    config file verbatim); HAProxy: a tls-ticket-keys naming the file."""
    for line in dump.splitlines():
        code = line.split("#", 1)[0]
        if flavor == "nginx":
            for pattern in re.findall(r"(?:^|[\s;{}])include\s+[\"']?([^\s;\"']+)[\"']?\s*;", code):
                if fnmatch.fnmatchcase(include_file, pattern):
                    return True
        else:
            tokens = code.split()
            if any(token == "tls-ticket-keys" and tokens[i + 1:i + 2] == [include_file] for i, token in enumerate(tokens)):
                return True
    return False

def lock():
    """flock(2) on descriptor 9, opened by the shell: the lock stays with the shell until it exits, even if killed."""
    deadline = time.time() + int(lock_timeout)
    while True:
        try:
            fcntl.flock(9, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.time() > deadline:
                raise Refused(8, "another apply-ticket-keys run holds %s after %ss: wait for it or raise --lock-timeout" % (os.path.join(key_dir, ".lock"), lock_timeout))
            time.sleep(0.1)

def main():
    if mode == "loads-keys":
        if not config_loads_keys(sys.stdin.read()):
            if flavor == "nginx":
                fix = "add `include %s/*.conf;` to each server block that terminates TLS (the onboarding step does it)" % os.path.dirname(include_file)
            else:
                fix = "add `tls-ticket-keys %s` to each bind line with ssl (the onboarding step does it)" % include_file
            raise Refused(9, "the server's config does not load the managed keys (%s): keys written there would never be used; %s, then run again" % (include_file, fix))
        return 0
    if mode == "runtime-update":
        return runtime_update()
    if mode == "status":
        state = read_state()
        if state is None:
            print(SEP.join(["none", "", "", "", "", ""]))
        else:
            print(SEP.join(["active" if active_set_intact(state) else "damaged", "", "", str(state[0]), ",".join(state[1]), ""]))
        return 0
    generation, names, materials = validate(sys.stdin.read())
    if mode == "validate":
        if runtime_socket:
            runtime_check()
        print(SEP.join(["valid", "", "", str(generation), ",".join(names), ""]))
        return 0
    lock()
    action, stage, include_tmp, active = prepare(generation, names, materials)
    print(SEP.join([action, stage, include_tmp, str(generation), ",".join(names), str(active)]))
    return 0

try:
    sys.exit(main())
except Refused as refused:
    print(str(refused), file=sys.stderr)
    sys.exit(refused.code)
except OSError as error:
    print("could not write %s: %s" % (error.filename, error.strerror), file=sys.stderr)
    sys.exit(8)
PY

# Runs the Python half; sets the globals from its answer or fails with its message.
keyset_step() {
  local mode=$1 answer code=0 errors input
  case "$mode" in
    status) input= ;;
    *) input=$keyset ;;
  esac
  errors=$(mktemp)
  answer=$(printf '%s' "$input" | python3 -c "$KEYSET_PY" "$mode" "$flavor" "$key_dir" "$include_file" "$allow_downgrade" "$lock_timeout" "$runtime_socket" 2>"$errors") || code=$?
  local message
  message=$(cat "$errors")
  rm -f "$errors"
  if [ "$code" -ne 0 ]; then
    case "$code" in
      2 | 3 | 4) fail "$code" refused "$message" ;;
      *) fail 8 failed "${message:-the key set step failed with exit code $code}" ;;
    esac
  fi
  IFS=$'\x1f' read -r step_action stage_dir include_tmp summary_generation summary_keys summary_active_generation <<<"$answer"
}

if [ "$status_only" = 1 ]; then
  keyset_step status
  summary_action=$step_action
  exit 0
fi

if [ "$input_file" = - ]; then
  keyset=$(cat) || fail 2 refused "could not read the key set from standard input"
else
  [ -r "$input_file" ] || fail 2 refused "cannot read --input $input_file: check the path and its permissions"
  keyset=$(cat -- "$input_file")
fi

keyset_step validate

command_output=$(mktemp)

# Server commands run without the lock's descriptor: a daemon a reload starts (haproxy -D)
# would otherwise hold the lock for as long as it lives.
run_server_command() {
  bash -c "$1" >"$command_output" 2>&1 9>&-
}

last_output_lines() {
  local lines
  lines=$(tail -n 3 -- "$command_output" | tr '\n' ' ')
  printf '%s' "${lines% }"
}

mkdir -p -- "$key_dir" 2>/dev/null || fail 8 failed "cannot create --key-dir $key_dir: check its parent and permissions"
chmod 700 -- "$key_dir" || fail 8 failed "cannot set the mode of $key_dir to 0700"
exec 9>>"$key_dir/.lock" || fail 8 failed "cannot open the lock file in $key_dir"
keyset_step prepare
if [ "$step_action" = unchanged ]; then
  summary_action=unchanged
  exit 0
fi

cleanup_stage() {
  [ -n "$stage_dir" ] && rm -rf -- "$stage_dir"
  [ -n "$include_tmp" ] && rm -f -- "$include_tmp"
  [ -n "$include_rollback" ] && rm -f -- "$include_rollback"
  return 0
}

restore_previous() {
  if [ -n "$include_rollback" ]; then
    mv -f -- "$include_rollback" "$include_file" || return 1
    include_rollback=
  else
    rm -f -- "$include_file" || return 1
  fi
  return 0
}

if [ -e "$include_file" ] || [ -L "$include_file" ]; then
  include_rollback=$(mktemp "$(dirname "$include_file")/.$(basename "$include_file").tmp.rollback.XXXXXX")
  cp -pP -- "$include_file" "$include_rollback" || fail 8 failed "cannot copy $include_file aside before replacing it"
fi
mv -f -- "$include_tmp" "$include_file" || { cleanup_stage; fail 8 failed "cannot replace $include_file: check permissions"; }
include_tmp=

if ! run_server_command "$test_cmd"; then
  details=$(last_output_lines)
  restore_previous || fail 7 failed "config test failed ($details) and the previous include could not be restored: fix $include_file by hand"
  cleanup_stage
  fail 5 restored "config test '$test_cmd' failed: $details; the previous key set was restored and the server was not reloaded"
fi

# Keys written where the server never reads them must not count as applied. With the runtime
# socket, the validate step has already found the file among the running HAProxy's.
if [ -z "$runtime_socket" ]; then
  loads_code=0
  config_dump=$(bash -c "$dump_cmd" 2>"$command_output" 9>&-) || loads_code=$?
  if [ "$loads_code" -ne 0 ]; then
    loads_error="the config dump '$dump_cmd' failed: $(last_output_lines); fix --config-dump-cmd (it must print the server's config)"
  else
    loads_error=$(printf '%s' "$config_dump" | python3 -c "$KEYSET_PY" loads-keys "$flavor" "$key_dir" "$include_file" "$allow_downgrade" "$lock_timeout" "$runtime_socket" 2>&1) || loads_code=$?
  fi
  config_dump=
  if [ "$loads_code" -ne 0 ]; then
    restore_previous || fail 7 failed "$loads_error; the previous include could not be restored: fix $include_file by hand"
    cleanup_stage
    fail 9 restored "$loads_error; the previous key set was restored and the server was not reloaded"
  fi
fi

if [ "$before_start" = 1 ]; then
  summary_via=start
elif [ -n "$runtime_socket" ]; then
  # HAProxy: the running keys follow the file through the runtime API, with no reload.
  runtime_code=0
  python3 -c "$KEYSET_PY" runtime-update "$flavor" "$key_dir" "$include_file" "$allow_downgrade" "$lock_timeout" "$runtime_socket" \
    </dev/null >/dev/null 2>"$command_output" || runtime_code=$?
  if [ "$runtime_code" -ne 0 ]; then
    details=$(last_output_lines)
    restore_previous || fail 7 failed "runtime API update failed ($details) and the previous file could not be restored: fix $include_file by hand"
    cleanup_stage
    [ "$runtime_code" -eq 11 ] && fail 6 restored "runtime API update failed: $details; the previous file was restored"
    { run_server_command "$test_cmd" && run_server_command "$reload_cmd"; } ||
      fail 7 failed "runtime API update failed: $details; reloading the restored previous file failed too: check the server"
    fail 6 restored "runtime API update failed: $details; the previous file was restored and reloaded"
  fi
  summary_via=runtime-api
elif ! run_server_command "$reload_cmd"; then
  details=$(last_output_lines)
  restore_previous || fail 7 failed "reload failed ($details) and the previous include could not be restored: fix $include_file by hand"
  cleanup_stage
  run_server_command "$reload_cmd" || fail 7 failed "reload '$reload_cmd' failed: $details; the previous include was restored but reloading it failed too: check the server"
  fail 6 restored "reload '$reload_cmd' failed: $details; the previous key set was restored and reloaded"
else
  summary_via=reload
fi

{ cp -- "$stage_dir/state.json" "$key_dir/active.json.tmp" && mv -f -- "$key_dir/active.json.tmp" "$key_dir/active.json"; } ||
  fail 8 failed "the new key set is loaded but the state file in $key_dir could not be written: run again"

for old in "$key_dir"/gen-*; do
  [ "$old" = "$stage_dir" ] || rm -rf -- "$old"
done
[ -n "$include_rollback" ] && rm -f -- "$include_rollback"
summary_action=applied
exit 0
