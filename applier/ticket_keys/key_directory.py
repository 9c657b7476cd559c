"""The key directory and the include: who may write them, what the applier recorded there, and
staging a generation. Nothing here follows a symlink, and every file it writes is new (O_EXCL)."""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import time

from errors import Refused
from flavors import Flavor

MEMORY_FILESYSTEMS = ("tmpfs", "ramfs")
STATE_FILE = "active.json"
LOCK_FILE = ".lock"
TRUSTED_OWNERS = {0, os.geteuid()}
OWNER = "root" if os.geteuid() == 0 else "root or uid %d" % os.geteuid()


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def read_regular(path: str) -> bytes:
    """The bytes of a regular file, never through a symlink."""
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        return handle.read()


def open_private(path: str):
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


def write_new_file(path: str, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def unique_name(directory: str, prefix: str) -> str:
    return os.path.join(directory, prefix + os.urandom(6).hex())


def write_temporary(directory: str, prefix: str, data: bytes, mode: int) -> str:
    """A new file with a unique name (O_EXCL, never through a symlink); returns its path."""
    while True:
        path = unique_name(directory, prefix)
        try:
            write_new_file(path, data, mode)
            return path
        except FileExistsError:
            continue


def make_directory(directory: str, prefix: str) -> str:
    """A new 0700 directory with a unique name; returns its path."""
    while True:
        path = unique_name(directory, prefix)
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def remove_entry(path: str) -> None:
    """Removes a file, a symlink (not what it points to) or a whole directory, never following a symlink."""
    if stat.S_ISDIR(os.lstat(path).st_mode):
        shutil.rmtree(path)  # fd-based on Linux: it never follows a symlink inside
    else:
        os.unlink(path)


@functools.lru_cache(maxsize=1)
def mounts() -> tuple[tuple[str, str], ...]:
    """Each mount point with its filesystem type, in the mount table's order (read once a run)."""
    table = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as lines:
        for line in lines:
            fields = line.split()
            mount_point = re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), fields[4])
            table.append((mount_point, fields[fields.index("-") + 1]))
    return tuple(table)


def filesystem_of(path: str) -> str:
    """The filesystem type of a path, or of its nearest existing ancestor, from the mount table."""
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    real = os.path.realpath(path)
    best, kind = "", "unknown"
    for mount_point, fstype in mounts():
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        # A later line mounted over an earlier one at the same point.
        if inside and len(mount_point) >= len(best):
            best, kind = mount_point, fstype
    return kind


def path_problem(path: str, what: str, sticky_ok: bool) -> str | None:
    """Why `path` (a directory that exists) cannot be trusted to hold keys, or None."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        return "%s %s is not a directory" % (what, path)
    if info.st_uid not in TRUSTED_OWNERS:
        return "%s %s is owned by uid %d, not %s: that user could plant or swap the files the server loads" % (what, path, info.st_uid, OWNER)
    if info.st_mode & 0o022 and not (sticky_ok and info.st_mode & stat.S_ISVTX):
        return "%s %s is writable by %s: they could plant or swap the files the server loads" % (what, path, "others" if info.st_mode & 0o002 else "its group")
    return None


class State:
    """What active.json records: the active generation, its key names, its directory and the
    SHA-256 of each key."""

    def __init__(self, generation: int, names: list[str], directory: str, digests: object):
        self.generation = generation
        self.names = names
        self.directory = directory
        self.digests = digests


class Staged:
    """A generation written beside the active one, not yet in force."""

    def __init__(self, directory: str, include_tmp: str, state_tmp: str):
        self.directory = directory
        self.include_tmp = include_tmp
        self.state_tmp = state_tmp


class KeyDirectory:
    def __init__(self, path: str, include_file: str, flavor: Flavor):
        self.path = path
        self.include_file = include_file
        self.include_dir, self.include_base = os.path.split(include_file)
        self.flavor = flavor

    def join(self, entry: str) -> str:
        return os.path.join(self.path, entry)

    def unsafe_paths(self) -> str | None:
        """The key directory, the include's directory and every parent must be owned by root (or
        the user running the applier) and writable by no one else. A parent with the sticky bit
        (/dev/shm, /tmp) is fine: others cannot rename or remove what is not theirs in it. Paths
        arrive resolved, so no component is a symlink."""
        for directory, what in ((self.path, "--key-dir"), (self.include_dir, "the directory of --include")):
            parts = directory.strip("/").split("/")
            for depth in range(len(parts) + 1):
                path = "/" + "/".join(parts[:depth])
                if not os.path.lexists(path):
                    break
                problem = path_problem(path, what if depth == len(parts) else "its parent", depth < len(parts))
                if problem:
                    return problem
        return None

    def refuse_unsafe_paths(self) -> None:
        problem = self.unsafe_paths()
        if problem:
            raise Refused(
                2,
                "%s; nothing changed: use a directory only %s can write, such as /run/tls-ticket-keys (remove the unsafe one first if you made it)"
                % (problem, OWNER),
            )

    def make(self) -> None:
        """Makes the key directory 0700, after its path was found safe. Another user may have made
        it since, in a parent such as /dev/shm: once it is ours, no one else can put anything in it."""
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError:
            raise Refused(8, "cannot create --key-dir %s: check its parent and permissions" % self.path) from None
        info = os.lstat(self.path)
        if stat.S_ISLNK(info.st_mode) or info.st_uid not in TRUSTED_OWNERS:
            raise Refused(
                2,
                "--key-dir %s was just made by uid %d, not by this run: another user raced for it; remove it and run again, "
                "or use a directory only root can write, such as /run/tls-ticket-keys" % (self.path, info.st_uid),
            )
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchmod(fd, 0o700)
        except OSError:
            raise Refused(8, "cannot set the mode of %s to 0700" % self.path) from None
        finally:
            os.close(fd)

    def lock(self, timeout: int) -> int:
        """flock(2) on the key directory's own .lock (never what a symlink names), held until this
        process exits, even if it is killed. Its descriptor is not inherited by the server's commands."""
        path = self.join(LOCK_FILE)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as error:
            if error.errno != errno.ELOOP:
                raise Refused(8, "the lock file %s is not a regular file this run can open: remove it and run again" % path) from None
            os.unlink(path)
            fd = os.open(path, flags, 0o600)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Refused(8, "the lock file %s is not the regular file this run opened: remove it and run again" % path)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Refused(8, "another apply-ticket-keys run holds %s after %ss: wait for it or raise --lock-timeout" % (path, timeout)) from None
                time.sleep(0.1)

    def read_state(self) -> State | None:
        try:
            state = json.loads(read_regular(self.join(STATE_FILE)))
            generation, names, directory, digests = state["generation"], state["keys"], state["dir"], state.get("sha256")
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(generation, int) or not isinstance(names, list) or not isinstance(directory, str):
            return None
        return State(generation, names, directory, digests)

    def is_leftover(self, entry: str) -> bool:
        """What a run killed part-way leaves behind: staged generations and temporary files."""
        return entry.startswith("gen-") or entry.startswith(".%s." % STATE_FILE) or entry.startswith(".%s.tmp." % self.include_base)

    def foreign_entries(self) -> list[str]:
        """Entries of the key directory the applier did not write."""
        known = {LOCK_FILE, STATE_FILE}
        if self.include_dir == self.path:
            known.add(self.include_base)
        return [entry for entry in sorted(os.listdir(self.path)) if entry not in known and not self.is_leftover(entry)]

    def render_include(self, generation: int, names: list[str], materials: list[bytes], directory: str) -> str:
        return self.flavor.render_include(generation, names, materials, directory)

    def active_set_problem(self, state: State, materials: list[bytes] | None = None) -> str | None:
        """Why the recorded generation is not intact on disk, or None. Intact: the key directory is
        safe and holds nothing the applier did not write; the generation directory holds exactly
        its key files, each 0600 with the recorded digest of its whole material (and the incoming
        set's material, when given); the include is exactly what the applier renders for them."""
        problem = self.unsafe_paths()
        if problem:
            return problem
        foreign = self.foreign_entries()
        if os.path.dirname(state.directory) != self.path or not os.path.basename(state.directory).startswith("gen-"):
            return "the state file names %s, not a generation directory of %s" % (state.directory, self.path)
        foreign = [entry for entry in foreign if entry != os.path.basename(state.directory)]
        if foreign:
            return "the key directory holds %s, which the applier did not write" % ", ".join(foreign)
        if not isinstance(state.digests, list) or len(state.digests) != len(state.names):
            return "the state file records no digest of the keys"
        expected = [self.flavor.key_file_name(index, name) for index, name in enumerate(state.names[: self.flavor.held_keys])]
        try:
            info = os.lstat(state.directory)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid not in TRUSTED_OWNERS or info.st_mode & 0o077:
                return "the generation directory %s is not a 0700 directory of %s" % (state.directory, OWNER)
            extra = sorted(set(os.listdir(state.directory)) - set(expected))
            if extra:
                return "the generation directory holds %s, which the applier did not write" % ", ".join(extra)
        except OSError:
            return "the generation directory %s is gone" % state.directory
        found = []
        for index, file_name in enumerate(expected):
            handle = open_private(os.path.join(state.directory, file_name))
            if handle is None:
                return "key file %s is missing, not a regular file, or readable by others" % file_name
            with handle:
                raw = handle.read()
            if digest(raw) != state.digests[index] or (materials is not None and raw != materials[index]):
                source = "incoming" if materials is not None and digest(raw) == state.digests[index] else "recorded"
                return "key file %s holds other material than the %s set" % (file_name, source)
            found.append(raw)
        try:
            if read_regular(self.include_file).decode(errors="replace") != self.render_include(state.generation, state.names, found, state.directory):
                return "the include %s differs from what the applier wrote" % self.include_file
        except OSError:
            return "the include %s is missing or not a regular file" % self.include_file
        if self.flavor.include_holds_keys and open_private(self.include_file) is None:
            return "the include %s holds keys but is readable by others" % self.include_file
        return None

    def referenced_directory(self) -> str | None:
        try:
            return self.flavor.referenced_directory(read_regular(self.include_file).decode(errors="replace"))
        except OSError:
            return None

    def remove_leftovers(self, keep: set[str]) -> None:
        for entry in os.listdir(self.path):
            path = self.join(entry)
            if self.is_leftover(entry) and path not in keep:
                remove_entry(path)
        if self.include_dir != self.path:
            for entry in os.listdir(self.include_dir):
                if entry.startswith(".%s.tmp." % self.include_base):
                    os.unlink(os.path.join(self.include_dir, entry))

    def remove_foreign(self, keep: set[str]) -> list[str]:
        """Removes what the applier did not write (but what the server may still load); returns its names."""
        foreign = self.foreign_entries()
        for entry in foreign:
            if self.join(entry) not in keep:
                remove_entry(self.join(entry))
        return foreign

    def stage(self, generation: int, names: list[str], materials: list[bytes]) -> Staged:
        """The generation's key files in a new directory, and new temporary files for the include
        and the state: nothing the server loads changes yet."""
        directory = make_directory(self.path, "gen-%d." % generation)
        for index, (name, raw) in enumerate(zip(names[: self.flavor.held_keys], materials)):
            write_new_file(os.path.join(directory, self.flavor.key_file_name(index, name)), raw, 0o600)
        dir_fd = os.open(directory, os.O_RDONLY)
        os.fsync(dir_fd)
        os.close(dir_fd)
        record = {"generation": generation, "keys": names, "dir": directory, "sha256": [digest(raw) for raw in materials]}
        state_tmp = write_temporary(self.path, ".%s." % STATE_FILE, json.dumps(record).encode(), 0o600)
        include = self.render_include(generation, names, materials, directory).encode()
        include_tmp = write_temporary(self.include_dir, ".%s.tmp." % self.include_base, include, 0o600 if self.flavor.include_holds_keys else 0o644)
        return Staged(directory, include_tmp, state_tmp)

    def keep_only(self, generation_directory: str) -> None:
        """After an apply: the key directory holds only what this run wrote (older generations go,
        and so does anything the applier did not write)."""
        keep = {LOCK_FILE, STATE_FILE, self.include_base, os.path.basename(generation_directory)}
        for entry in os.listdir(self.path):
            if entry not in keep:
                remove_entry(self.join(entry))
