"""Applies a TLS session ticket key set to one server: validates it fully, writes the key files
and the server's include file atomically, tests the config, reloads, and restores the previous
set if the test or the reload fails. Prints exactly one JSON summary line on stdout, on every
path, and never key material. apply-ticket-keys.sh runs it: `python3 -I -S ticket_keys/__main__.py`.

Exit codes:
  0  applied, or that generation was already active (nothing done)
  2  usage error: an option is missing or wrong; nothing touched
  3  the key set is invalid; nothing touched
  4  the key set conflicts with the active one (older generation without --allow-downgrade, or
     the same generation with other keys); nothing touched
  5  the config test failed; the previous set was restored
  6  the reload (or the HAProxy runtime API update) failed; the previous set was restored
  7  the previous set could not be restored: the node needs attention
  8  could not lock or write (permissions, disk); the previous set is still in force
  9  the server's config does not load the managed keys (or could not be dumped); the previous
     set was restored before any reload
  1  an unexpected failure; the summary's error says where
"""

from __future__ import annotations

import json
import os
import re
import sys

import command_line
from command_line import Stop
from errors import Refused
from flavors import Flavor, RuntimeApi, RuntimeFailure, all_flavors
from key_directory import MEMORY_FILESYSTEMS, OWNER, TRUSTED_OWNERS, KeyDirectory, Staged, filesystem_of, read_regular, remove_entry
from keyset import InvalidKeySet, KeySet, parse

USAGE = """Usage: apply-ticket-keys.sh [options] [--input FILE|-]
  --flavor %(flavors)s  server flavor (default nginx)
  --key-dir DIR           directory for the key files (created 0700), on a memory filesystem
  --include FILE          nginx: the file its config includes; haproxy: the tls-ticket-keys file
  --test-cmd CMD          config test (default: %(test)s)
  --config-dump-cmd CMD   prints the config the server loads, to check that it loads the managed
                          keys (default: %(dump)s)
  --reload-cmd CMD        reload (default: %(reload)s)
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
"""
VALUE_OPTIONS = {
    "--flavor": "flavor",
    "--key-dir": "key_dir",
    "--include": "include_file",
    "--test-cmd": "test_command",
    "--config-dump-cmd": "dump_command",
    "--reload-cmd": "reload_command",
    "--input": "input_file",
    "--lock-timeout": "lock_timeout",
    "--runtime-socket": "runtime_socket",
}
FLAG_OPTIONS = {
    "--allow-downgrade": "allow_downgrade",
    "--allow-persistent-key-dir": "allow_persistent",
    "--status": "status_only",
    "--prepare-key-dir": "prepare_only",
    "--before-start": "before_start",
}




class Summary:
    def __init__(self) -> None:
        self.action = "failed"
        self.flavor = "nginx"
        self.generation: int | None = None
        self.keys: list[str] = []
        self.previous_generation: int | None = None
        self.via = ""
        self.key_storage = ""
        self.removed: list[str] = []
        self.error = ""
        #: What the operator's log should show besides the summary: a healed set, entries removed.
        self.notes: list[str] = []

    def line(self, exit_code: int) -> str:
        out: dict[str, object] = {"action": self.action, "flavor": self.flavor, "exitCode": exit_code}
        if self.generation is not None:
            out["generation"] = self.generation
        out["keys"] = self.keys
        if self.previous_generation is not None:
            out["previousGeneration"] = self.previous_generation
        if self.via:
            out["via"] = self.via
        if self.key_storage:
            out["keyStorage"] = self.key_storage
            out["keysInMemory"] = self.key_storage in MEMORY_FILESYSTEMS
        if self.removed:
            out["removed"] = self.removed
        if self.error:
            out["error"] = self.error
        return json.dumps(out, separators=(",", ":"))


class Options:
    def __init__(self) -> None:
        self.flavor = "nginx"
        self.key_dir = ""
        self.include_file = ""
        self.test_command = ""
        self.dump_command = ""
        self.reload_command = ""
        self.input_file = "-"
        self.lock_timeout = "60"
        self.runtime_socket = ""
        self.allow_downgrade = False
        self.allow_persistent = False
        self.status_only = False
        self.prepare_only = False
        self.before_start = False
        self.help = False


def parse_options(argv: list[str]) -> Options:
    options = Options()
    command_line.parse_options(argv, options, VALUE_OPTIONS, FLAG_OPTIONS)
    return options

class ServerCommands:
    """The server's own commands, run by bash without this run's lock (its descriptor, like every
    one Python opens, is closed on exec: a daemon a reload starts must not hold it), with their
    output kept for the summary."""

    def __init__(self, test: str, dump: str, reload: str):
        self.test = test
        self.dump = dump
        self.reload = reload

    @staticmethod
    def output_file() -> int:
        """An unnamed file for a command's output: a file, not a pipe, which a daemon the command
        leaves behind would hold open."""
        return os.open(tempfile_directory(), os.O_TMPFILE | os.O_RDWR, 0o600)

    @staticmethod
    def run(command: str, stdout: int, stderr: int) -> bool:
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0), (os.POSIX_SPAWN_DUP2, stdout, 1), (os.POSIX_SPAWN_DUP2, stderr, 2)]
        pid = os.posix_spawnp("bash", ["bash", "-c", command], os.environ, file_actions=actions)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0

    @staticmethod
    def read(fd: int) -> str:
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks).decode(errors="replace")
            chunks.append(chunk)

    @classmethod
    def last_lines(cls, fd: int) -> str:
        lines = cls.read(fd).split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return " ".join(lines[-3:])

    def attempt(self, command: str) -> str | None:
        """None when the command succeeds; else the last lines it printed."""
        output = self.output_file()
        try:
            return None if self.run(command, output, output) else self.last_lines(output)
        finally:
            os.close(output)

    def config_dump(self) -> tuple[str | None, str]:
        """The config the server loads, or None and what the dump printed on stderr."""
        stdout, stderr = self.output_file(), self.output_file()
        try:
            if not self.run(self.dump, stdout, stderr):
                return None, self.last_lines(stderr)
            return self.read(stdout), ""
        finally:
            os.close(stdout)
            os.close(stderr)


def tempfile_directory() -> str:
    """Where the commands' output goes: $TMPDIR as tempfile would choose it, else /tmp."""
    directory = os.environ.get("TMPDIR", "")
    return directory if directory and os.path.isdir(directory) else "/tmp"


class Apply:
    """One apply: the staged generation, the include set aside, and how to undo both."""

    def __init__(self, options: Options, flavor: Flavor, keys: KeyDirectory, commands: ServerCommands, runtime: RuntimeApi | None, summary: Summary):
        self.options = options
        self.flavor = flavor
        self.keys = keys
        self.commands = commands
        self.runtime = runtime
        self.summary = summary
        self.staged: Staged | None = None
        self.rollback: str | None = None

    def prepare(self, key_set: KeySet) -> bool:
        """Stages the generation; False when it is already active and intact (nothing to do)."""
        keys = self.keys
        keys.refuse_unsafe_paths()
        state = keys.read_state()
        if state is not None:
            if key_set.generation < state.generation and not self.options.allow_downgrade:
                raise Refused(
                    4,
                    "generation %d is older than the active generation %d: nothing changed; pass --allow-downgrade to go back on purpose"
                    % (key_set.generation, state.generation),
                )
            if key_set.generation == state.generation:
                if key_set.names != state.names:
                    raise Refused(
                        4,
                        "generation %d is already active with other keys: two writers made different sets of one generation; "
                        "nothing changed, find the other writer and rotate again" % key_set.generation,
                    )
                problem = keys.active_set_problem(state, key_set.materials)
                if problem is None and self.runtime is not None and self.runtime.differs_from(self.file_keys()):
                    problem = "%s runs other keys than its file" % self.flavor.name
                if problem is None:
                    # A run killed after it recorded this generation may have left the older one behind.
                    keys.remove_leftovers({state.directory})
                    return False
                self.summary.notes.append("generation %d is active but damaged (%s): applying it again" % (key_set.generation, problem))
        keep = {directory for directory in (keys.referenced_directory(), state.directory if state else None) if directory}
        removed = keys.remove_foreign(keep)
        if removed:
            self.summary.notes.append("removed from %s what the applier did not write: %s" % (keys.path, ", ".join(removed)))
        keys.remove_leftovers(keep)
        self.staged = keys.stage(key_set.generation, key_set.names, key_set.materials)
        self.summary.removed = removed
        self.summary.previous_generation = state.generation if state else None
        return True

    def file_keys(self) -> list[str]:
        try:
            return read_regular(self.keys.include_file).decode().split()
        except OSError:
            return []

    def put_include_in_place(self) -> None:
        include = self.keys.include_file
        assert self.staged is not None
        if os.path.lexists(include):
            self.rollback = self.aside(include)
        try:
            os.replace(self.staged.include_tmp, include)
        except OSError:
            self.discard_stage()
            raise Stop(8, "failed", "cannot replace %s: check permissions" % include) from None
        self.staged.include_tmp = ""

    def aside(self, include: str) -> str:
        """A second name for the include in force (a hard link, a symlink as a symlink), to put it back."""
        for _ in range(100):
            path = "%s/.%s.tmp.rollback.%s" % (self.keys.include_dir, self.keys.include_base, os.urandom(6).hex())
            try:
                os.link(include, path, follow_symlinks=False)
                return path
            except FileExistsError:
                continue
            except OSError:
                break
        raise Stop(8, "failed", "cannot copy %s aside before replacing it" % include)

    def restore_previous(self) -> bool:
        try:
            if self.rollback:
                os.replace(self.rollback, self.keys.include_file)
                self.rollback = None
            else:
                os.unlink(self.keys.include_file)
        except OSError:
            return False
        return True

    def discard_stage(self) -> None:
        staged = self.staged
        for path in (staged.directory, staged.state_tmp, staged.include_tmp) if staged else ():
            if path and os.path.lexists(path):
                remove_entry(path)
        if self.rollback and os.path.lexists(self.rollback):
            os.unlink(self.rollback)
        self.rollback = None

    def undo(self, code: int, message: str, unrestored: str) -> Stop:
        """Puts the previous include back and drops the staged generation; `unrestored` when that fails."""
        if not self.restore_previous():
            return Stop(7, "failed", unrestored)
        self.discard_stage()
        return Stop(code, "restored", message)

    def test_config(self) -> None:
        details = self.commands.attempt(self.commands.test)
        if details is not None:
            include = self.keys.include_file
            raise self.undo(
                5,
                "config test '%s' failed: %s; the previous key set was restored and the server was not reloaded" % (self.commands.test, details),
                "config test failed (%s) and the previous include could not be restored: fix %s by hand" % (details, include),
            )

    def check_config_loads_keys(self) -> None:
        """Keys written where the server never reads them must not count as applied."""
        dump, errors = self.commands.config_dump()
        include = self.keys.include_file
        if dump is None:
            problem = "the config dump '%s' failed: %s; fix --config-dump-cmd (it must print the server's config)" % (self.commands.dump, errors)
        elif not self.flavor.config_loads_keys(dump, include):
            problem = "the server's config does not load the managed keys (%s): keys written there would never be used; %s, then run again" % (
                include,
                self.flavor.how_to_load_keys(include),
            )
        else:
            return
        raise self.undo(
            9,
            "%s; the previous key set was restored and the server was not reloaded" % problem,
            "%s; the previous include could not be restored: fix %s by hand" % (problem, include),
        )

    def update_running_keys(self, runtime: RuntimeApi) -> None:
        include = self.keys.include_file
        try:
            failure = runtime.update(self.file_keys())
            restored = True
        except RuntimeFailure as unknown:
            failure, restored = str(unknown), False
        if failure is None:
            self.summary.via = "runtime-api"
            return
        if not self.restore_previous():
            raise Stop(7, "failed", "runtime API update failed (%s) and the previous file could not be restored: fix %s by hand" % (failure, include))
        self.discard_stage()
        if restored:
            raise Stop(6, "restored", "runtime API update failed: %s; the previous file was restored" % failure)
        if self.commands.attempt(self.commands.test) is not None or self.commands.attempt(self.commands.reload) is not None:
            raise Stop(7, "failed", "runtime API update failed: %s; reloading the restored previous file failed too: check the server" % failure)
        raise Stop(6, "restored", "runtime API update failed: %s; the previous file was restored and reloaded" % failure)

    def reload(self) -> None:
        details = self.commands.attempt(self.commands.reload)
        if details is None:
            self.summary.via = "reload"
            return
        include, command = self.keys.include_file, self.commands.reload
        if not self.restore_previous():
            raise Stop(7, "failed", "reload failed (%s) and the previous include could not be restored: fix %s by hand" % (details, include))
        self.discard_stage()
        if self.commands.attempt(command) is not None:
            raise Stop(7, "failed", "reload '%s' failed: %s; the previous include was restored but reloading it failed too: check the server" % (command, details))
        raise Stop(6, "restored", "reload '%s' failed: %s; the previous key set was restored and reloaded" % (command, details))

    def record(self) -> None:
        assert self.staged is not None
        try:
            os.replace(self.staged.state_tmp, self.keys.join("active.json"))
        except OSError:
            raise Stop(8, "failed", "the new key set is loaded but the state file in %s could not be written: run again" % self.keys.path) from None
        if self.rollback:
            os.unlink(self.rollback)
        self.keys.keep_only(self.staged.directory)

    def run(self, key_set: KeySet) -> str:
        if not self.prepare(key_set):
            return "unchanged"
        self.put_include_in_place()
        self.test_config()
        # With the runtime API, the validate step has already found the file among the running server's.
        if self.runtime is None:
            self.check_config_loads_keys()
        if self.options.before_start:
            self.summary.via = "start"
        elif self.runtime is not None:
            self.update_running_keys(self.runtime)
        else:
            self.reload()
        self.record()
        return "applied"


def read_key_set(input_file: str) -> str:
    try:
        if input_file == "-":
            return sys.stdin.buffer.read().decode(errors="replace")
        with open(input_file, "rb") as handle:
            return handle.read().decode(errors="replace")
    except OSError:
        if input_file == "-":
            raise Stop(2, "refused", "could not read the key set from standard input") from None
        raise Stop(2, "refused", "cannot read --input %s: check the path and its permissions" % input_file) from None


def refused(error: Refused) -> Stop:
    return Stop(error.code, "refused" if error.code in (2, 3, 4) else "failed", str(error))


def run(argv: list[str], summary: Summary, key_set_text: str | None = None) -> int:
    """One run of the applier; `key_set_text` instead of reading --input (onboarding's prestart)."""
    options = parse_options(argv)
    flavors = all_flavors()
    if options.help:
        defaults = lambda attribute: "; ".join("%s: %s" % (name, getattr(flavor, attribute)) for name, flavor in flavors.items())  # noqa: E731
        print(USAGE % {"flavors": "|".join(flavors), "test": defaults("test_command"), "dump": defaults("dump_command"), "reload": defaults("reload_command")}, end="", file=sys.stderr)
        summary.action = "help"
        return 0
    summary.flavor = options.flavor
    flavor = flavors.get(options.flavor)
    if flavor is None:
        raise Stop(2, "refused", "flavor %s is not supported: use %s" % (options.flavor, " or ".join("--flavor %s" % name for name in flavors)))
    if options.runtime_socket and not flavor.has_runtime_api:
        with_api = [name for name, other in flavors.items() if other.has_runtime_api]
        raise Stop(2, "refused", "--runtime-socket is for %s only" % " or ".join("--flavor %s" % name for name in with_api))
    if options.runtime_socket and options.before_start:
        raise Stop(2, "refused", "--before-start runs before the server listens on its runtime API: drop --runtime-socket")
    if not options.key_dir:
        raise Stop(2, "refused", "--key-dir is required: the directory that holds the key files")
    if not options.include_file:
        raise Stop(2, "refused", "--include is required: the file the server's config includes")
    if not re.fullmatch(r"[0-9]+", options.lock_timeout):
        raise Stop(2, "refused", "--lock-timeout must be a whole number of seconds")
    # One spelling of each path, so a generation directory is never mistaken for a stale one.
    key_dir = os.path.realpath(options.key_dir)
    include_file = os.path.abspath(options.include_file)
    if os.path.dirname(include_file) != key_dir and not os.path.isdir(os.path.dirname(include_file)):
        raise Stop(2, "refused", "the directory of --include %s does not exist: create it or fix the path" % include_file)
    summary.key_storage = filesystem_of(key_dir)
    if not options.allow_persistent:
        if summary.key_storage not in MEMORY_FILESYSTEMS:
            raise Stop(
                2,
                "refused",
                "--key-dir %s is on %s, a persistent filesystem: keys there outlive their rotation in backups and snapshots; "
                "use a directory on tmpfs (such as /run/tls-ticket-keys) or pass --allow-persistent-key-dir to accept that on purpose"
                % (key_dir, summary.key_storage),
            )
        include_storage = filesystem_of(include_file)
        if include_storage not in MEMORY_FILESYSTEMS:
            raise Stop(
                2,
                "refused",
                "--include %s is on %s, a persistent filesystem: after a reboot it would name key files that are gone "
                "(and HAProxy's holds the keys themselves); put it in the key directory, or pass --allow-persistent-key-dir"
                % (include_file, include_storage),
            )
    keys = KeyDirectory(key_dir, include_file, flavor)
    runtime = flavor.runtime_api(options.runtime_socket, include_file) if options.runtime_socket else None
    try:
        if options.prepare_only:
            keys.refuse_unsafe_paths()
            keys.make()
            summary.action = "prepared"
            return 0
        if options.status_only:
            status(keys, summary)
            return 0
        text = read_key_set(options.input_file) if key_set_text is None else key_set_text
        try:
            key_set = parse(text)
        except InvalidKeySet as invalid:
            raise Refused(3, str(invalid)) from None
        problem = flavor.set_problem(key_set.names, key_set.key_length)
        if problem:
            raise Refused(3, problem)
        keys.refuse_unsafe_paths()
        if runtime is not None:
            runtime.check(TRUSTED_OWNERS, OWNER)
        summary.generation, summary.keys = key_set.generation, key_set.names
        keys.make()
        lock = keys.lock(int(options.lock_timeout))
        try:
            commands = ServerCommands(
                options.test_command or flavor.test_command,
                options.dump_command or flavor.dump_command,
                options.reload_command or flavor.reload_command,
            )
            summary.action = Apply(options, flavor, keys, commands, runtime, summary).run(key_set)
        finally:
            os.close(lock)
        return 0
    except Refused as error:
        raise refused(error) from None
    except OSError as error:
        raise Stop(8, "failed", "could not write %s: %s" % (error.filename, error.strerror)) from None


def status(keys: KeyDirectory, summary: Summary) -> None:
    state = keys.read_state()
    if state is None:
        foreign = keys.foreign_entries() if os.path.isdir(keys.path) else []
        problem = keys.unsafe_paths() or (foreign and "the key directory holds %s, which the applier did not write" % ", ".join(foreign)) or ""
        summary.action = "damaged" if problem else "none"
    else:
        problem = keys.active_set_problem(state) or ""
        summary.action = "damaged" if problem else "active"
        summary.generation, summary.keys = state.generation, state.names
    summary.error = problem


def disable_core_dumps() -> None:
    """It holds keys: no core file, and no ptrace by other processes of this user."""
    try:
        import ctypes
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
    except (OSError, AttributeError, ValueError, ImportError):
        pass  # not Linux: the wrapper's `ulimit -c 0` still holds


def main(argv: list[str]) -> int:
    disable_core_dumps()
    summary = Summary()
    try:
        code = run(argv, summary)
    except Stop as stop:
        summary.notes.append(str(stop))
        summary.action, summary.error, code = stop.action, str(stop), stop.code
    except Exception as error:  # noqa: BLE001 - the summary line is printed on every path
        frame = error.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        where = "%s line %d" % (os.path.basename(frame.tb_frame.f_code.co_filename), frame.tb_lineno) if frame else "the applier"
        summary.action, summary.error, code = "failed", "unexpected failure (%s) at %s" % (type(error).__name__, where), 1
        summary.notes.append(summary.error)
    for message in summary.notes:
        print("apply-ticket-keys: %s" % message, file=sys.stderr)
    print(summary.line(code), flush=True)
    return code
