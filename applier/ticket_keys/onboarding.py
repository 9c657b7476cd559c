"""Prepares a node once for managed TLS session ticket keys: the key directory on a memory
filesystem (recreated at boot), the server's config loading the managed keys, checked with the
server's own config test. Refuses, changing nothing, when the config cannot be changed safely.
Prints exactly one JSON summary line on stdout on every path. onboard-node.sh runs it.

Onboarding also installs the boot-time fetch: the scripts and this program under --install-dir,
and a systemd drop-in that runs them before the server starts.

With --prestart it does what a node needs before its server starts (systemd ExecStartPre): the
key directory, then the fleet's current key set from --fetch-cmd, applied with no reload, so
that a node that rebooted, was replaced or was stopped through rotations resumes its peers'
tickets from its first connection. When the store cannot be reached within --fetch-wait seconds
the server starts anyway (availability first) with what it has: the set still in the key
directory, or keys of its own (for a server that refuses to start without its keys file) until
the association converges it. The summary (keySource: store, kept or own) and a line on stderr
say which. A prestart exits 0 unless the key directory cannot be prepared.

Exit codes:
  0  onboarded, or already onboarded (nothing changed)
  2  usage error; nothing changed
  3  the config or the key directory cannot be changed safely; nothing changed
  5  the config test failed after the change; the config was restored byte for byte
  8  could not write; nothing changed
  1  an unexpected failure; the summary's error says where
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import apply
import command_line
from command_line import Stop
from errors import Unsafe
from flavors import Flavor, all_flavors
from key_directory import MEMORY_FILESYSTEMS, filesystem_of, write_temporary

PROGRAM_DIR = os.path.dirname(os.path.abspath(__file__))
SCRIPTS_DIR = os.path.dirname(PROGRAM_DIR)

USAGE = """Usage: onboard-node.sh --config FILE [options]
  --flavor %(flavors)s      server flavor (default nginx)
  --config FILE               nginx: the file with the TLS server blocks; haproxy: haproxy.cfg
  --key-dir DIR               the managed key directory (default /run/tls-ticket-keys)
  --include FILE              the managed include (default: %(includes)s in DIR)
  --test-cmd CMD              config test (default: %(tests)s)
  --config-dump-cmd CMD       prints the config the server loads (the applier's default if not given)
  --fetch-cmd CMD             prints the fleet's current key set (AWSCURRENT) on stdout: the boot-time
                              fetch; exit 254 means the store answered with an error (not worth waiting)
  --fetch-wait SECONDS        how long a start waits for the store (default 30)
  --install-dir DIR           where the boot-time fetch is installed (default /usr/local/lib/tls-ticket-keys)
  --tmpfiles-dir DIR          where systemd-tmpfiles reads its config (default /etc/tmpfiles.d; none to skip)
  --systemd-dir DIR           where the ExecStartPre drop-in goes (default /etc/systemd/system; none to skip)
  --allow-persistent-key-dir  accept a key directory on a persistent filesystem
  --prestart                  before a start: prepare the key directory and fetch the current keys
"""
VALUE_OPTIONS = {
    "--flavor": "flavor",
    "--config": "config",
    "--key-dir": "key_dir",
    "--include": "include_file",
    "--test-cmd": "test_command",
    "--config-dump-cmd": "dump_command",
    "--fetch-cmd": "fetch_command",
    "--fetch-wait": "fetch_wait",
    "--install-dir": "install_dir",
    "--tmpfiles-dir": "tmpfiles_dir",
    "--systemd-dir": "systemd_dir",
}
FLAG_OPTIONS = {"--allow-persistent-key-dir": "allow_persistent", "--prestart": "prestart"}
#: The AWS CLI's exit code for an error the service answered: waiting would not change the answer.
SERVICE_ERROR = 254




class Options:
    def __init__(self) -> None:
        self.flavor = "nginx"
        self.config = ""
        self.key_dir = "/run/tls-ticket-keys"
        self.include_file = ""
        self.test_command = ""
        self.dump_command = ""
        self.fetch_command = ""
        self.fetch_wait = "30"
        self.install_dir = "/usr/local/lib/tls-ticket-keys"
        self.tmpfiles_dir = "/etc/tmpfiles.d"
        self.systemd_dir = "/etc/systemd/system"
        self.allow_persistent = False
        self.prestart = False
        self.help = False


class Summary:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.action = "failed"
        self.changed = 0
        self.key_storage = ""
        self.key_source = ""
        self.generation: int | None = None
        self.fetch_error = ""
        self.error = ""

    def line(self, exit_code: int) -> str:
        options = self.options
        out: dict[str, object] = {
            "action": self.action,
            "flavor": options.flavor,
            "exitCode": exit_code,
            "config": options.config,
            "changed": self.changed,
            "keyDir": options.key_dir,
        }
        if self.key_storage:
            out["keyStorage"] = self.key_storage
            out["keysInMemory"] = self.key_storage in MEMORY_FILESYSTEMS
        if self.key_source:
            out["keySource"] = self.key_source
        if self.generation is not None:
            out["generation"] = self.generation
        if self.fetch_error:
            out["fetchError"] = self.fetch_error
        if self.error:
            out["error"] = self.error
        return json.dumps(out, separators=(",", ":"))


def parse_options(argv: list[str]) -> Options:
    options = Options()
    command_line.parse_options(argv, options, VALUE_OPTIONS, FLAG_OPTIONS)
    return options

class Node:
    """One node's onboarding or prestart: its flavor, key directory and server commands."""

    def __init__(self, options: Options, flavor: Flavor, summary: Summary):
        self.options = options
        self.flavor = flavor
        self.summary = summary

    def server_args(self) -> list[str]:
        """The options the applier and the prestart share: the flavor, where its keys go, its commands."""
        options = self.options
        args = ["--flavor", options.flavor, "--key-dir", options.key_dir, "--include", options.include_file]
        if options.test_command:
            args += ["--test-cmd", options.test_command]
        if options.dump_command:
            args += ["--config-dump-cmd", options.dump_command]
        if options.allow_persistent:
            args.append("--allow-persistent-key-dir")
        return args

    def applier_args(self) -> list[str]:
        # A short lock wait: the whole prestart must end well inside systemd's start timeout (90 s).
        return self.server_args() + ["--lock-timeout", "10"]

    def applier(self, extra: list[str], key_set_text: str | None = None) -> tuple[int, apply.Summary]:
        """The applier, run here in this process (not through its wrapper): its exit code and summary."""
        result = apply.Summary()
        try:
            return apply.run(self.applier_args() + extra, result, key_set_text), result
        except Stop as stop:
            result.action, result.error = stop.action, str(stop)
            return stop.code, result

    def make_key_dir(self) -> None:
        """The applier checks that only root can write the key directory and its parents, then makes it."""
        code, result = self.applier(["--prepare-key-dir"])
        if code == 2:
            raise Stop(3, "refused", result.error)
        if code != 0:
            raise Stop(8, "failed", result.error)

    def write_own_keys(self) -> None:
        keys = self.flavor.own_keys()
        include = self.options.include_file
        if keys is None or (os.path.isfile(include) and os.path.getsize(include) > 0):
            return
        try:
            staged = write_temporary(os.path.dirname(include), ".%s.tmp." % os.path.basename(include), keys, 0o600)
            os.replace(staged, include)
        except OSError:
            raise Stop(8, "failed", "cannot write %s" % include) from None

    def fetch(self) -> tuple[int, str, str]:
        """Runs --fetch-cmd until it answers, or --fetch-wait seconds have passed: its exit code,
        its output and the last line of its errors."""
        deadline = time.monotonic() + int(self.options.fetch_wait)
        delay = 1.0
        while True:
            left = deadline - time.monotonic()
            code, output, errors = run_with_timeout(self.options.fetch_command, max(left, 1.0))
            # Another answer than the store's error may be a network still coming up.
            if code in (0, SERVICE_ERROR):
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(left, delay))
            delay *= 2
        last = errors.strip().split("\n")[-1][:300] if errors.strip() else ""
        return code, output, last

    def fetch_and_apply(self) -> None:
        summary = self.summary
        code, key_set_text, failure = self.fetch()
        if code != 0:
            waited = "" if code == SERVICE_ERROR else ", after waiting up to %s s" % self.options.fetch_wait
            summary.fetch_error = "could not get the current key set (%s; exit %d%s)" % (failure, code, waited)
            return
        code, result = self.applier(["--before-start"], key_set_text)
        if code == 0:
            summary.key_source, summary.generation = "store", result.generation
        else:
            summary.fetch_error = "the current key set was not applied: %s" % result.error

    def fall_back(self) -> None:
        """What the server starts with when the fetch did not work: the set the key directory
        still holds (a restart without a reboot), or keys of its own."""
        _, result = self.applier(["--status"])
        if result.action == "active":
            self.summary.key_source, self.summary.generation = "kept", result.generation
        else:
            self.summary.key_source = "own"

    def prestart(self) -> None:
        summary, name = self.summary, self.options.flavor
        self.make_key_dir()
        if self.options.fetch_command:
            self.fetch_and_apply()
        if summary.key_source != "store":
            self.fall_back()
        self.write_own_keys()
        why = " (%s)" % summary.fetch_error if summary.fetch_error else ""
        if summary.key_source == "store":
            print("tls-ticket-keys: %s starts on generation %s, the fleet's current key set" % (name, summary.generation), file=sys.stderr)
        elif summary.key_source == "kept":
            print("tls-ticket-keys: %s starts on generation %s, the set its key directory kept%s; the association converges it" % (name, summary.generation, why), file=sys.stderr)
        else:
            print("tls-ticket-keys: %s starts on keys of its own%s; the association converges it" % (name, why), file=sys.stderr)
        summary.action = "prepared"

    def install_boot_fetch(self) -> None:
        """What runs at every boot: systemd-tmpfiles recreates the key directory, and the drop-in
        runs the prestart (onboard-node.sh, installed with the applier) before the server starts."""
        options, name = self.options, self.options.flavor
        if options.tmpfiles_dir != "none" and os.path.isdir(options.tmpfiles_dir):
            path = os.path.join(options.tmpfiles_dir, "tls-ticket-keys.conf")
            write_or_stop(path, "d %s 0700 root root -\n" % options.key_dir, 0o644)
        if options.systemd_dir == "none" or not os.path.isdir(options.systemd_dir):
            return
        self.install_program()
        prestart = ["--prestart", *self.server_args(), "--fetch-wait", options.fetch_wait]
        if options.fetch_command:
            prestart += ["--fetch-cmd", options.fetch_command]
        command = " ".join(shlex.quote(word) for word in ["/bin/bash", os.path.join(options.install_dir, "onboard-node.sh"), *prestart])
        lines = ["#!/bin/bash", "# Written by onboard-node.sh: the boot-time fetch, run before %s starts (systemd ExecStartPre)." % name]
        # A drop-in's ExecStartPre runs after the unit's own. A server whose unit checks its config
        # before the keys file exists gets the prestart in place of that check, then the check.
        if self.flavor.replaces_unit_config_check:
            lines += ["%s || exit" % command, "exec /bin/bash -c %s" % shlex.quote(options.test_command)]
        else:
            lines.append("exec %s" % command)
        before_start = os.path.join(options.install_dir, "before-start-%s.sh" % name)
        write_or_stop(before_start, "\n".join(lines) + "\n", 0o644)
        unit = self.flavor.unit or name
        unit_dir = os.path.join(options.systemd_dir, "%s.service.d" % unit)
        try:
            os.makedirs(unit_dir, exist_ok=True)
        except OSError:
            raise Stop(8, "failed", "cannot create %s" % unit_dir) from None
        reset = "ExecStartPre=\n" if self.flavor.replaces_unit_config_check else ""
        drop_in = (
            "# Written by onboard-node.sh: the fleet's current TLS ticket keys before %s starts.\n"
            "[Unit]\nWants=network-online.target\nAfter=network-online.target\n\n"
            "[Service]\n%sExecStartPre=/bin/bash %s\n" % (name, reset, before_start)
        )
        write_or_stop(os.path.join(unit_dir, "tls-ticket-keys.conf"), drop_in, 0o644, "the %s.service drop-in in %s" % (unit, options.systemd_dir))
        if shutil.which("systemctl") and os.path.isdir("/run/systemd/system"):
            subprocess.run(["systemctl", "daemon-reload"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def install_program(self) -> None:
        """The two scripts and this program, whole: a file an older version had does not stay behind."""
        install_dir = self.options.install_dir
        try:
            os.makedirs(install_dir, exist_ok=True)
            for script in ("onboard-node.sh", "apply-ticket-keys.sh"):
                source, target = os.path.join(SCRIPTS_DIR, script), os.path.join(install_dir, script)
                if not (os.path.exists(target) and os.path.samefile(source, target)):
                    shutil.copyfile(source, target)
                    os.chmod(target, 0o755)
            target_program = os.path.join(install_dir, "ticket_keys")
            if os.path.exists(target_program) and os.path.samefile(PROGRAM_DIR, target_program):
                return
            shutil.rmtree(target_program, ignore_errors=True)
            for directory, subdirectories, files in os.walk(PROGRAM_DIR):
                subdirectories[:] = [name for name in subdirectories if name != "__pycache__"]
                relative = os.path.relpath(directory, PROGRAM_DIR)
                os.makedirs(os.path.join(target_program, relative), exist_ok=True)
                for file in files:
                    if file.endswith(".py"):
                        target = os.path.join(target_program, relative, file)
                        shutil.copyfile(os.path.join(directory, file), target)
                        os.chmod(target, 0o644)
        except OSError as error:
            raise Stop(8, "failed", "cannot install %s: %s (the scripts and ticket_keys/ must sit together)" % (error.filename or install_dir, error.strerror)) from None

    def onboard(self) -> None:
        options, summary = self.options, self.summary
        if not options.config:
            raise Stop(2, "refused", "--config is required: the file that holds the TLS server blocks (nginx) or haproxy.cfg")
        if not (os.path.isfile(options.config) and os.access(options.config, os.R_OK)):
            raise Stop(2, "refused", "cannot read --config %s: check the path" % options.config)
        # A config that is a symlink (sites-enabled/default) is edited where it points, and stays a link.
        config_file = os.path.realpath(options.config)
        try:
            with open(config_file, encoding="utf-8", newline="") as handle:
                lines = handle.readlines()
        except (OSError, UnicodeDecodeError) as error:
            raise Stop(8, "failed", "could not read %s: %s" % (options.config, error)) from None
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        try:
            edited, changed = self.flavor.onboard(lines, config_file, options.key_dir, options.include_file)
        except Unsafe as unsafe:
            raise Stop(3, "refused", "cannot change %s safely: %s; nothing was changed" % (options.config, unsafe)) from None
        self.make_key_dir()
        self.write_own_keys()
        if changed == 0:
            self.install_boot_fetch()
            summary.action = "unchanged"
            return
        summary.changed = changed
        directory, base = os.path.split(config_file)
        info = os.stat(config_file)
        try:
            # A copy as it was, owner, mode and times included, to put back if the test fails.
            backup = write_temporary(directory, ".%s.onboard." % base, open_bytes(config_file), 0o600)
            shutil.copystat(config_file, backup)
            os.chown(backup, info.st_uid, info.st_gid)
        except OSError:
            raise Stop(8, "failed", "cannot write beside %s" % options.config) from None
        try:
            try:
                staged = write_temporary(directory, ".%s.new." % base, "".join(edited).encode("utf-8"), info.st_mode & 0o7777)
                os.chown(staged, info.st_uid, info.st_gid)
                os.replace(staged, config_file)
            except OSError:
                raise Stop(8, "failed", "cannot replace %s" % options.config) from None
            code, output, _ = run_with_timeout(options.test_command, None, merge_errors=True)
            if code != 0:
                os.replace(backup, config_file)
                tail = " ".join(output.rstrip("\n").split("\n")[-3:])
                raise Stop(5, "restored", "config test '%s' failed after adding the managed keys: %s; %s was restored as it was" % (options.test_command, tail, options.config))
        finally:
            if os.path.lexists(backup):
                os.unlink(backup)
        self.install_boot_fetch()
        summary.action = "onboarded"


def open_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def write_or_stop(path: str, text: str, mode: int, what: str = "") -> None:
    """Replaces `path` whole; stops with "cannot write <what, or the path>" when it cannot."""
    try:
        staged = write_temporary(os.path.dirname(path), ".%s.tmp." % os.path.basename(path), text.encode(), mode)
        os.replace(staged, path)
    except OSError:
        raise Stop(8, "failed", "cannot write %s" % (what or path)) from None


def run_with_timeout(command: str, timeout: float | None, merge_errors: bool = False) -> tuple[int, str, str]:
    """bash -c `command` in a session of its own, killed whole after `timeout` seconds (exit 124,
    as timeout(1) says): its exit code, stdout and stderr."""
    process = subprocess.Popen(
        ["bash", "-c", command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_errors else subprocess.PIPE,
        start_new_session=True,
    )
    try:
        output, errors = process.communicate(timeout=timeout)
        code = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, errors = process.communicate()
        code = 124
    return code, output.decode(errors="replace"), (errors or b"").decode(errors="replace")


def run(argv: list[str], summary: Summary) -> int:
    summary.options = options = parse_options(argv)
    flavors = all_flavors()
    if options.help:
        print(
            USAGE
            % {
                "flavors": "|".join(flavors),
                "includes": " or ".join(flavor.include_file_name for flavor in flavors.values()),
                "tests": "; ".join("%s: %s" % (name, flavor.onboarding_test_command("FILE")) for name, flavor in flavors.items()),
            },
            end="",
            file=sys.stderr,
        )
        summary.action = "help"
        return 0
    flavor = flavors.get(options.flavor)
    if flavor is None:
        raise Stop(2, "refused", "flavor %s is not supported: use %s" % (options.flavor, " or ".join("--flavor %s" % name for name in flavors)))
    options.include_file = options.include_file or os.path.join(options.key_dir, flavor.include_file_name)
    if not options.key_dir.startswith("/"):
        raise Stop(2, "refused", "--key-dir must be an absolute path (got %s)" % options.key_dir)
    if not re.fullmatch(r"/[A-Za-z0-9._/-]+", options.install_dir):
        raise Stop(2, "refused", "--install-dir must be an absolute path of letters, digits and ._/- (got %s): systemd reads it in the drop-in" % options.install_dir)
    if not re.fullmatch(r"[0-9]+", options.fetch_wait):
        raise Stop(2, "refused", "--fetch-wait must be a whole number of seconds (got %s)" % options.fetch_wait)
    options.key_dir = os.path.realpath(options.key_dir)
    options.include_file = os.path.abspath(options.include_file)
    summary.key_storage = filesystem_of(options.key_dir)
    if summary.key_storage not in MEMORY_FILESYSTEMS and not options.allow_persistent:
        raise Stop(
            3,
            "refused",
            "--key-dir %s is on %s, a persistent filesystem: keys there outlive their rotation; use a directory under /run, "
            "or mount a tmpfs there first (mount -t tmpfs -o size=1m,mode=0700 tmpfs %s, and add it to /etc/fstab), "
            "or pass --allow-persistent-key-dir" % (options.key_dir, summary.key_storage, options.key_dir),
        )
    node = Node(options, flavor, summary)
    if options.prestart:
        node.prestart()
        return 0
    options.test_command = options.test_command or flavor.onboarding_test_command(options.config)
    node.onboard()
    return 0


def main(argv: list[str]) -> int:
    apply.disable_core_dumps()  # a prestart holds the key set
    summary = Summary(Options())
    try:
        code = run(argv, summary)
    except Stop as stop:
        summary.action, summary.error, code = stop.action, str(stop), stop.code
        print("onboard-node: %s" % stop, file=sys.stderr)
    except Exception as error:  # noqa: BLE001 - the summary line is printed on every path
        summary.action, summary.error, code = "failed", "unexpected failure (%s): %s" % (type(error).__name__, error), 1
        print("onboard-node: %s" % summary.error, file=sys.stderr)
    print(summary.line(code), flush=True)
    return code
