"""HAProxy: a `tls-ticket-keys` file holding the keys themselves, one base64 line each, in the order
previous, current, next; it holds TLS_TICKETS_NO keys (3 in every build we know), and takes new
ones without a reload through its runtime API (`set ssl tls-key`).
https://docs.haproxy.org/2.6/configuration.html#5.1-tls-ticket-keys"""

from __future__ import annotations

import base64
import os
import re
import stat

from errors import Refused, Unsafe
from flavors import Flavor, RuntimeApi, RuntimeFailure, code_of, uncommented

SLOTS = 3  # TLS_TICKETS_NO, HAProxy's build-time number of ticket keys per file


def file_order(items: list[bytes]) -> list[bytes]:
    """The set's order (current, next, previous newest first) as HAProxy's file wants it:
    previous, current, next. The file needs all three slots: a set with no previous key
    repeats its current key first."""
    ordered = (list(reversed(items[2:])) + items[:2])[-SLOTS:]
    return [items[0]] * (SLOTS - len(ordered)) + ordered


def file_layout(raw: bytes) -> bytes:
    """80-byte keys: the set holds name|hmac|aes (nginx's layout); HAProxy reads name|aes|hmac."""
    return raw[:16] + raw[48:] + raw[16:48] if len(raw) == 80 else raw


class HAProxy(Flavor):
    name = "haproxy"
    include_file_name = "tls-ticket-keys"
    test_command = "haproxy -c -q -f /etc/haproxy/haproxy.cfg"
    dump_command = "cat /etc/haproxy/haproxy.cfg"
    reload_command = "systemctl reload haproxy"
    include_holds_keys = True
    has_runtime_api = True
    # Fedora's unit checks the config before starting, and HAProxy refuses a missing keys file.
    replaces_unit_config_check = True

    def onboarding_test_command(self, config_file: str) -> str:
        return "haproxy -c -q -f %s" % config_file

    def own_keys(self) -> bytes | None:
        # HAProxy refuses to start without its tls-ticket-keys file.
        return b"".join(base64.b64encode(os.urandom(80)) + b"\n" for _ in range(SLOTS))

    def onboard(self, lines: list[str], config_path: str, key_dir: str, include_file: str) -> tuple[list[str], int]:
        """`tls-ticket-keys` naming the managed file on each bind line with ssl."""
        out, changed, tls = [], 0, 0
        for number, line in enumerate(lines):
            code = code_of(line)
            tokens = code.split()
            if tokens[:1] == ["bind"] and "ssl" in tokens:
                tls += 1
                if code.rstrip().endswith("\\"):
                    raise Unsafe("the bind line %d continues on the next line: join it, or add `tls-ticket-keys %s` by hand" % (number + 1, include_file))
                if "tls-ticket-keys" in tokens:
                    named = tokens[tokens.index("tls-ticket-keys") + 1 : tokens.index("tls-ticket-keys") + 2]
                    if named != [include_file]:
                        raise Unsafe(
                            "the bind line %d already loads tls-ticket-keys %s: remove it, then run again (the managed file replaces it)" % (number + 1, " ".join(named))
                        )
                else:
                    rest = line[len(code.rstrip()) :]
                    line = "%s tls-ticket-keys %s%s" % (code.rstrip(), include_file, rest if rest.strip() else "\n")
                    changed += 1
            out.append(line)
        if tls == 0:
            raise Unsafe("%s has no bind line with ssl: give the HAProxy config that terminates TLS (--config)" % config_path)
        return out, changed

    def runtime_api(self, socket_path: str, include_file: str) -> RuntimeApi | None:
        return HAProxyRuntimeApi(socket_path, include_file)

    def set_problem(self, names: list[str], key_length: int) -> str | None:
        if len(names) <= SLOTS:
            return None
        return (
            "key set keeps %d previous keys but HAProxy holds %d keys (previous, current, next): rotate less often or "
            "shorten the ticket lifetime so that one previous key covers it (ticket lifetime no longer than the rotation interval)"
            % (len(names) - 2, SLOTS)
        )

    def render_include(self, generation: int, names: list[str], materials: list[bytes], directory: str) -> str:
        keys = [file_layout(raw) for raw in materials]
        return "".join(base64.b64encode(key).decode() + "\n" for key in file_order(keys))

    def config_loads_keys(self, dump: str, include_file: str) -> bool:
        for line in dump.splitlines():
            tokens = uncommented(line).split()
            if any(token == "tls-ticket-keys" and tokens[i + 1 : i + 2] == [include_file] for i, token in enumerate(tokens)):
                return True
        return False

    def how_to_load_keys(self, include_file: str) -> str:
        return "add `tls-ticket-keys %s` to each bind line with ssl (the onboarding step does it)" % include_file


FLAVOR = HAProxy()


class HAProxyRuntimeApi(RuntimeApi):
    """HAProxy's runtime API at `socket_path`, for the keys of `keys_file`. Its replies can hold
    key material: they are never printed."""

    def __init__(self, socket_path: str, keys_file: str):
        self.socket_path = socket_path
        self.keys_file = keys_file

    def call(self, command: str) -> str:
        import socket  # here, not above: most runs never talk to HAProxy, and the import costs them time

        try:
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            connection.settimeout(10)
            connection.connect(self.socket_path)
            connection.sendall(command.encode() + b"\n")
            chunks = []
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
            connection.close()
        except OSError as error:
            words = command.split(" ")
            raise RuntimeFailure("the runtime API at %s did not answer '%s %s': %s" % (self.socket_path, words[0], words[1], error.strerror or error)) from None
        return b"".join(chunks).decode(errors="replace")

    def running_keys(self) -> list[str]:
        reply = self.call("show tls-keys %s" % self.keys_file)
        keys = [line.split(" ", 1)[1].strip() for line in reply.splitlines() if re.match(r"^\d+\.\d+ ", line)]
        if not keys:
            raise RuntimeFailure("HAProxy lists no ticket keys for %s: is it the file of a bind line's tls-ticket-keys?" % self.keys_file)
        return keys

    def sync(self, target: list[str]) -> None:
        """Makes the running keys equal `target` (oldest first) with as few `set ssl tls-key` calls
        as the overlap allows: each call appends a key and drops the oldest."""
        running = self.running_keys()
        for shift in range(len(running) + 1):
            if running[shift:] == target[: len(running) - shift]:
                break
        for key in target[len(running) - shift :]:
            if "TLS ticket key updated" not in self.call("set ssl tls-key %s %s" % (self.keys_file, key)):
                raise RuntimeFailure("HAProxy refused 'set ssl tls-key' for %s" % self.keys_file)
        if self.running_keys() != target:
            raise RuntimeFailure("HAProxy's running keys differ from %s after the update" % self.keys_file)

    def differs_from(self, file_keys: list[str]) -> bool:
        try:
            return self.running_keys() != file_keys
        except RuntimeFailure:
            return True

    def update(self, file_keys: list[str]) -> str | None:
        previous = self.running_keys()
        try:
            self.sync(file_keys)
        except RuntimeFailure as failure:
            try:
                self.sync(previous)
            except RuntimeFailure:
                raise RuntimeFailure("%s; restoring the previous keys through the runtime API failed too" % failure) from None
            return "%s; the previous keys run again" % failure
        return None

    def access_problem(self, trusted_owners: set[int], owner: str) -> str | None:
        """Why others could reach the runtime API, where `show tls-keys` prints the keys, or None."""
        try:
            info = os.lstat(self.socket_path)
        except OSError:
            return None  # connecting fails next, with its own message
        if not stat.S_ISSOCK(info.st_mode):
            return "--runtime-socket %s is not a socket (a symlink is not followed)" % self.socket_path
        if info.st_uid not in trusted_owners:
            return "--runtime-socket %s is owned by uid %d, not %s" % (self.socket_path, info.st_uid, owner)
        if info.st_mode & 0o002:
            return "--runtime-socket %s lets every user on the node connect (mode %o)" % (self.socket_path, info.st_mode & 0o777)
        if info.st_mode & 0o020 and info.st_gid not in (0, os.getegid()):
            return "--runtime-socket %s lets group %d connect (mode %o)" % (self.socket_path, info.st_gid, info.st_mode & 0o777)
        return None

    def check(self, trusted_owners: set[int], owner: str) -> None:
        problem = self.access_problem(trusted_owners, owner)
        if problem:
            raise Refused(
                2,
                "%s: whoever can connect reads every ticket key with `show tls-keys`; nothing changed: declare it "
                "`stats socket %s mode 600 level admin` in HAProxy's global section (owner root), or drop --runtime-socket"
                % (problem, self.socket_path),
            )
        try:
            count = len(self.running_keys())
        except RuntimeFailure as failure:
            raise Refused(2, "%s: check --runtime-socket (HAProxy's 'stats socket ... level admin')" % failure) from None
        if count != SLOTS:
            raise Refused(
                3,
                "this HAProxy holds %d ticket keys per file, but the applier writes %d (previous, current, next): "
                "use an HAProxy built with the default TLS_TICKETS_NO" % (count, SLOTS),
            )
