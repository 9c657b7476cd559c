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
ulimit -c 0     # it holds keys: a crash must not write them to a core file

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
  --prepare-key-dir       check that only root can write the key directory and its parents, and
                          create it 0700 (onboarding does this); no key set is read
EOF
}

summary_action=failed
summary_generation=
summary_keys=
summary_active_generation=
summary_error=
summary_key_storage=
summary_removed=
state_tmp=
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
prepare_only=0
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
  SUMMARY_ACTIVE=$summary_active_generation SUMMARY_ERROR=$summary_error SUMMARY_FLAVOR=$flavor SUMMARY_EXIT=$code SUMMARY_VIA=$summary_via SUMMARY_STORAGE=$summary_key_storage SUMMARY_REMOVED=$summary_removed \
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
if e["SUMMARY_REMOVED"]:
    out["removed"] = e["SUMMARY_REMOVED"].split(",")
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
    --prepare-key-dir) prepare_only=1; shift ;;
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
import base64, binascii, datetime, fcntl, fnmatch, hashlib, json, os, re, shutil, socket, stat, sys, tempfile, time

mode, flavor, key_dir, include_file, allow_downgrade, lock_timeout, runtime_socket = sys.argv[1:8]
try:
    import ctypes
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no core dump, no ptrace by other processes of this user
except (OSError, AttributeError):
    pass  # not Linux: the shell's `ulimit -c 0` still holds
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

def is_utc_timestamp(text):
    """An ISO 8601 UTC time that names a real instant (no February 30, no hour 25)."""
    if not ISO.match(text):
        return False
    try:
        datetime.datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return False
    return True

def expected_state(index):
    return "current" if index == 0 else "next" if index == 1 else "previous"

def validate(text):
    if text.strip() == "":
        invalid("key set is empty: give the key set JSON on standard input or as a file")
    try:
        doc = json.loads(text)
    except ValueError:
        invalid("key set is not valid JSON: " + TODO)
    if not isinstance(doc, dict):
        invalid("key set is not a JSON object: " + TODO)
    if doc.get("format") != FORMAT:
        invalid("key set format %s is unknown: expected \"%s\"" % (json.dumps(doc.get("format")), FORMAT))
    if doc.get("version") != VERSION or isinstance(doc.get("version"), bool):
        invalid("key set version %s is not supported: this tool reads version %d; upgrade the tool or rewrite the set" % (json.dumps(doc.get("version")), VERSION))
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
        if not is_utc_timestamp(key["createdAt"]):
            invalid("%s (%s) has createdAt that is not an ISO 8601 UTC time: %s" % (where, name, TODO))
        material = key["material"]
        try:
            if len(material) % 4 or not B64.match(material):
                raise ValueError()
            raw = base64.b64decode(material, validate=True)
        except (ValueError, binascii.Error):
            invalid("%s (%s) material is not valid base64: %s" % (where, name, TODO))
        if base64.b64encode(raw).decode() != material:
            invalid("%s (%s) material is not canonical base64 (its last character sets bits past the end): %s" % (where, name, TODO))
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

def render_include(generation, names, materials, directory):
    """nginx: an include naming the key files; HAProxy: the keys themselves, one base64 line each."""
    if flavor == "nginx":
        lines = ["# Managed by apply-ticket-keys.sh: generation %d. Do not edit; the next rotation replaces it." % generation]
        lines += ["ssl_session_ticket_key %s;" % os.path.join(directory, key_file_name(i, n)) for i, n in enumerate(names)]
        return "\n".join(lines) + "\n"
    keys = [haproxy_layout(raw) for raw in materials]
    return "".join(base64.b64encode(key).decode() + "\n" for key in haproxy_order(keys))

def digest(raw):
    return hashlib.sha256(raw).hexdigest()

TRUSTED_OWNERS = {0, os.geteuid()}
OWNER = "root" if os.geteuid() == 0 else "root or uid %d" % os.geteuid()

def path_problem(path, what, sticky_ok):
    """Why `path` (a directory that exists) cannot be trusted to hold keys, or None."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        return "%s %s is not a directory" % (what, path)
    if info.st_uid not in TRUSTED_OWNERS:
        return "%s %s is owned by uid %d, not %s: that user could plant or swap the files the server loads" % (what, path, info.st_uid, OWNER)
    if info.st_mode & 0o022 and not (sticky_ok and info.st_mode & stat.S_ISVTX):
        return "%s %s is writable by %s: they could plant or swap the files the server loads" % (what, path, "others" if info.st_mode & 0o002 else "its group")
    return None

def unsafe_paths():
    """The key directory, the include's directory and every parent must be owned by root (or the
    user running the applier) and writable by no one else. A parent with the sticky bit (/dev/shm,
    /tmp) is fine: others cannot rename or remove what is not theirs in it. Paths arrive resolved
    (realpath), so no component is a symlink."""
    for directory, what in ((key_dir, "--key-dir"), (os.path.dirname(include_file), "the directory of --include")):
        parts = directory.strip("/").split("/")
        for depth in range(len(parts) + 1):
            path = "/" + "/".join(parts[:depth])
            if not os.path.lexists(path):
                break
            problem = path_problem(path, what if depth == len(parts) else "its parent", depth < len(parts))
            if problem:
                return problem
    return None

def refuse_unsafe_paths():
    problem = unsafe_paths()
    if problem:
        raise Refused(2, "%s; nothing changed: use a directory only %s can write, such as /run/tls-ticket-keys (remove the unsafe one first if you made it)" % (problem, OWNER))

def open_private(path):
    """Opens a file without following a symlink; None unless it is a regular file of a trusted owner, mode 0600."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid not in TRUSTED_OWNERS or info.st_mode & 0o777 != 0o600:
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")

def read_regular(path):
    """The bytes of a regular file, never through a symlink."""
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError("not a regular file", path)
        return handle.read()

def read_state():
    """The recorded active generation: (generation, names, directory, digests), or None."""
    try:
        state = json.loads(read_regular(STATE_FILE))
        generation, names, directory, digests = state["generation"], state["keys"], state["dir"], state.get("sha256")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(generation, int) or not isinstance(names, list) or not isinstance(directory, str):
        return None
    return generation, names, directory, digests

def is_leftover(entry):
    """What a run killed part-way leaves behind: staged generations and temporary files."""
    return entry.startswith("gen-") or entry.startswith(".active.json.") or entry.startswith(".%s.tmp." % os.path.basename(include_file))

def foreign_entries():
    """Entries of the key directory the applier did not write."""
    known = {".lock", "active.json"}
    if os.path.dirname(include_file) == key_dir:
        known.add(os.path.basename(include_file))
    return [entry for entry in sorted(os.listdir(key_dir)) if entry not in known and not is_leftover(entry)]

def active_set_problem(state, materials=None):
    """Why the recorded generation is not intact on disk, or None. Intact: the key directory is
    safe and holds nothing the applier did not write; the generation directory holds exactly its
    key files, each 0600 with the recorded digest of its whole material (and the incoming set's
    material, when given); the include is exactly what the applier renders for them."""
    generation, names, directory, digests = state
    problem = unsafe_paths()
    if problem:
        return problem
    foreign = foreign_entries()
    if os.path.dirname(directory) != key_dir or not os.path.basename(directory).startswith("gen-"):
        return "the state file names %s, not a generation directory of %s" % (directory, key_dir)
    foreign = [entry for entry in foreign if entry != os.path.basename(directory)]
    if foreign:
        return "the key directory holds %s, which the applier did not write" % ", ".join(foreign)
    if not isinstance(digests, list) or len(digests) != len(names):
        return "the state file records no digest of the keys"
    try:
        info = os.lstat(directory)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid not in TRUSTED_OWNERS or info.st_mode & 0o077:
            return "the generation directory %s is not a 0700 directory of %s" % (directory, OWNER)
        expected = [key_file_name(index, name) for index, name in enumerate(names)]
        extra = sorted(set(os.listdir(directory)) - set(expected))
        if extra:
            return "the generation directory holds %s, which the applier did not write" % ", ".join(extra)
    except OSError:
        return "the generation directory %s is gone" % directory
    found = []
    for index, file_name in enumerate(expected):
        handle = open_private(os.path.join(directory, file_name))
        if handle is None:
            return "key file %s is missing, not a regular file, or readable by others" % file_name
        with handle:
            raw = handle.read()
        if digest(raw) != digests[index] or (materials is not None and raw != materials[index]):
            return "key file %s holds other material than the %s set" % (file_name, "incoming" if materials is not None and digest(raw) == digests[index] else "recorded")
        found.append(raw)
    try:
        if read_regular(include_file).decode(errors="replace") != render_include(generation, names, found, directory):
            return "the include %s differs from what the applier wrote" % include_file
    except OSError:
        return "the include %s is missing or not a regular file" % include_file
    if flavor == "haproxy" and open_private(include_file) is None:
        return "the include %s holds keys but is readable by others" % include_file
    return None

def referenced_dir():
    try:
        for line in read_regular(include_file).decode(errors="replace").splitlines():
            match = re.match(r"^ssl_session_ticket_key (.+)/[^/]+;$", line.strip())
            if match:
                return match.group(1)
    except OSError:
        pass
    return None

def remove_entry(path):
    """Removes a file, a symlink (not what it points to) or a whole directory, never following a symlink."""
    if stat.S_ISDIR(os.lstat(path).st_mode):
        shutil.rmtree(path)  # fd-based on Linux: it never follows a symlink inside
    else:
        os.unlink(path)

def remove_leftovers(keep):
    for entry in os.listdir(key_dir):
        path = os.path.join(key_dir, entry)
        if is_leftover(entry) and path not in keep:
            remove_entry(path)
    include_dir, base = os.path.split(include_file)
    if include_dir != key_dir:
        for entry in os.listdir(include_dir):
            if entry.startswith(".%s.tmp." % base):
                os.unlink(os.path.join(include_dir, entry))

def write_file(path, data, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)

def write_temporary(directory, prefix, data, mode):
    """A new file with a unique name (mkstemp: O_EXCL, never through a symlink); returns its path."""
    fd, path = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path

def prepare(generation, names, materials):
    refuse_unsafe_paths()
    state = read_state()
    if state is not None:
        active_generation, active_names = state[0], state[1]
        if generation < active_generation and allow_downgrade != "1":
            raise Refused(4, "generation %d is older than the active generation %d: nothing changed; pass --allow-downgrade to go back on purpose" % (generation, active_generation))
        if generation == active_generation:
            if names != active_names:
                raise Refused(4, "generation %d is already active with other keys: two writers made different sets of one generation; nothing changed, find the other writer and rotate again" % generation)
            problem = active_set_problem(state, materials)
            if problem is None and runtime_socket and running_keys_differ():
                problem = "HAProxy runs other keys than its file"
            if problem is None:
                # A run killed after it recorded this generation may have left the older one behind.
                remove_leftovers({state[2]})
                return "unchanged", "", "", "", []
            print("generation %d is active but damaged (%s): applying it again" % (generation, problem), file=sys.stderr)
    foreign = foreign_entries()
    keep = {d for d in (referenced_dir(), state[2] if state else None) if d}
    for entry in foreign:
        if os.path.join(key_dir, entry) not in keep:
            remove_entry(os.path.join(key_dir, entry))
    if foreign:
        print("removed from %s what the applier did not write: %s" % (key_dir, ", ".join(foreign)), file=sys.stderr)
    remove_leftovers(keep)
    stage = tempfile.mkdtemp(prefix="gen-%d." % generation, dir=key_dir)
    for index, (name, raw) in enumerate(zip(names, materials)):
        write_file(os.path.join(stage, key_file_name(index, name)), raw, 0o600)
    dir_fd = os.open(stage, os.O_RDONLY)
    os.fsync(dir_fd)
    os.close(dir_fd)
    state_record = {"generation": generation, "keys": names, "dir": stage, "sha256": [digest(raw) for raw in materials]}
    state_tmp = write_temporary(key_dir, ".active.json.", json.dumps(state_record).encode(), 0o600)
    include_dir, base = os.path.split(include_file)
    # HAProxy's file holds the keys themselves.
    include_tmp = write_temporary(include_dir, ".%s.tmp." % base, render_include(generation, names, materials, stage).encode(), 0o600 if flavor == "haproxy" else 0o644)
    return "apply", stage, include_tmp, state_tmp, foreign

def answer(action, stage="", include_tmp="", state_tmp="", generation="", names=(), active="", note=""):
    """The one line the shell reads: fields separated by \x1f, so that empty ones survive `read`."""
    print(SEP.join([action, stage, include_tmp, state_tmp, str(generation), ",".join(names), str(active), note.replace("\n", " ")]))

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
        return running_keys() != read_regular(include_file).decode().split()
    except (OSError, RuntimeFailure):
        return True

def runtime_update():
    """Exit 0: running keys equal the new file. 11: failed, the previous keys run again. 12: failed, unknown."""
    target = read_regular(include_file).decode().split()
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
    answer("synced")
    return 0

def runtime_socket_problem():
    """Why others could reach HAProxy's runtime API, where `show tls-keys` prints the keys, or None."""
    try:
        info = os.lstat(runtime_socket)
    except OSError:
        return None  # connecting fails next, with its own message
    if not stat.S_ISSOCK(info.st_mode):
        return "--runtime-socket %s is not a socket (a symlink is not followed)" % runtime_socket
    if info.st_uid not in TRUSTED_OWNERS:
        return "--runtime-socket %s is owned by uid %d, not %s" % (runtime_socket, info.st_uid, OWNER)
    if info.st_mode & 0o002:
        return "--runtime-socket %s lets every user on the node connect (mode %o)" % (runtime_socket, info.st_mode & 0o777)
    if info.st_mode & 0o020 and info.st_gid not in (0, os.getegid()):
        return "--runtime-socket %s lets group %d connect (mode %o)" % (runtime_socket, info.st_gid, info.st_mode & 0o777)
    return None

def runtime_check():
    """Before anything is touched: only root can reach the socket, it answers, and this HAProxy
    holds as many keys as the file."""
    problem = runtime_socket_problem()
    if problem:
        raise Refused(2, "%s: whoever can connect reads every ticket key with `show tls-keys`; nothing changed: declare it `stats socket %s mode 600 level admin` in HAProxy's global section (owner root), or drop --runtime-socket" % (problem, runtime_socket))
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
    """flock(2) on descriptor 9, opened by the shell: the lock stays with the shell until it exits,
    even if killed. Descriptor 9 must be the key directory's own .lock, not what a symlink named."""
    opened, named = os.fstat(9), os.lstat(os.path.join(key_dir, ".lock"))
    if not stat.S_ISREG(named.st_mode) or (opened.st_dev, opened.st_ino) != (named.st_dev, named.st_ino):
        raise Refused(8, "the lock file %s is not the regular file this run opened: remove it and run again" % os.path.join(key_dir, ".lock"))
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
                fix = "add `include %s[%s];` to each server block that terminates TLS (the onboarding step does it)" % (include_file[:-1], include_file[-1])
            else:
                fix = "add `tls-ticket-keys %s` to each bind line with ssl (the onboarding step does it)" % include_file
            raise Refused(9, "the server's config does not load the managed keys (%s): keys written there would never be used; %s, then run again" % (include_file, fix))
        return 0
    if mode == "runtime-update":
        return runtime_update()
    if mode == "check-paths":
        refuse_unsafe_paths()
        return 0
    if mode == "status":
        state = read_state()
        if state is None:
            foreign = foreign_entries() if os.path.isdir(key_dir) else []
            problem = unsafe_paths() or (foreign and "the key directory holds %s, which the applier did not write" % ", ".join(foreign))
            answer("damaged" if problem else "none", note=problem or "")
        else:
            problem = active_set_problem(state)
            answer("damaged" if problem else "active", generation=state[0], names=state[1], note=problem or "")
        return 0
    generation, names, materials = validate(sys.stdin.read())
    if mode == "validate":
        refuse_unsafe_paths()
        if runtime_socket:
            runtime_check()
        answer("valid", generation=generation, names=names)
        return 0
    lock()
    action, stage, include_tmp, state_tmp, removed = prepare(generation, names, materials)
    active = read_state() if action == "apply" else None
    answer(action, stage, include_tmp, state_tmp, generation, names, active[0] if active else "", ",".join(removed))
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
    status | check-paths) input= ;;
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
  # What it healed (a damaged active set, entries it did not write), for the operator's log.
  [ -z "$message" ] || printf 'apply-ticket-keys: %s\n' "$message" >&2
  IFS=$'\x1f' read -r step_action stage_dir include_tmp state_tmp summary_generation summary_keys summary_active_generation step_note <<<"$answer"
}

# Makes the key directory 0700, after the check-paths or validate step found its path safe.
# Another user may have made it since, in a parent such as /dev/shm: once it is ours, no one
# else can put anything in it.
prepare_key_dir() {
  mkdir -p -- "$key_dir" 2>/dev/null || fail 8 failed "cannot create --key-dir $key_dir: check its parent and permissions"
  local owner
  owner=$(stat -c %u -- "$key_dir")
  { [ ! -L "$key_dir" ] && { [ "$owner" = 0 ] || [ "$owner" = "$EUID" ]; }; } ||
    fail 2 refused "--key-dir $key_dir was just made by uid $owner, not by this run: another user raced for it; remove it and run again, or use a directory only root can write, such as /run/tls-ticket-keys"
  chmod 700 -- "$key_dir" || fail 8 failed "cannot set the mode of $key_dir to 0700"
}

if [ "$prepare_only" = 1 ]; then
  keyset_step check-paths
  prepare_key_dir
  summary_action=prepared
  exit 0
fi

if [ "$status_only" = 1 ]; then
  keyset_step status
  summary_action=$step_action
  summary_error=$step_note
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

prepare_key_dir
if [ -L "$key_dir/.lock" ]; then rm -f -- "$key_dir/.lock"; fi
exec 9>>"$key_dir/.lock" || fail 8 failed "cannot open the lock file in $key_dir"
keyset_step prepare
summary_removed=$step_note
if [ "$step_action" = unchanged ]; then
  summary_action=unchanged
  exit 0
fi

cleanup_stage() {
  [ -n "$stage_dir" ] && rm -rf -- "$stage_dir"
  [ -n "$state_tmp" ] && rm -f -- "$state_tmp"
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

mv -f -- "$state_tmp" "$key_dir/active.json" ||
  fail 8 failed "the new key set is loaded but the state file in $key_dir could not be written: run again"
state_tmp=

# The key directory now holds only what this run wrote: older generations go, and so does
# anything the applier did not write (find does not follow symlinks; rm removes the link).
[ -n "$include_rollback" ] && rm -f -- "$include_rollback"
find "$key_dir" -mindepth 1 -maxdepth 1 ! -name .lock ! -name active.json ! -name "$(basename "$include_file")" ! -name "$(basename "$stage_dir")" -exec rm -rf -- {} +
summary_action=applied
exit 0
