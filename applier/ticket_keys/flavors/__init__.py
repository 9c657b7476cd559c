"""Server flavors: each one a driver behind the one interface below, in a file of its own. The
applier knows no flavor by name; an unknown one is refused, never treated like another."""

from __future__ import annotations

import re


class Flavor:
    """What the applier needs to know of a server."""

    name = ""
    #: The include's file name in the key directory, when none is given.
    include_file_name = ""
    #: The defaults of --test-cmd, --config-dump-cmd and --reload-cmd.
    test_command = ""
    dump_command = ""
    reload_command = ""
    #: Its systemd unit, where onboarding puts the boot-time fetch's drop-in; the flavor's name when unset.
    unit = ""
    #: Whether the include holds the keys themselves (then it is written 0600), or names key files.
    include_holds_keys = False
    #: Whether a running server takes new keys through a runtime API (--runtime-socket) instead of a reload.
    has_runtime_api = False
    #: How many of the set's keys, current first, the server holds, and so the applier writes to
    #: disk; None: all of them.
    held_keys: int | None = None

    def onboarding_test_command(self, config_file: str) -> str:
        """The config test onboarding runs after editing `config_file`, when none is given."""
        return self.test_command

    def own_keys(self) -> bytes | None:
        """Keys of a node's own, for a server that will not start without its keys file: shared
        with nobody, until the applier writes the fleet's. None: it starts without one."""
        return None

    #: Whether the server's unit has a config check of its own that fails before the keys file
    #: exists: the boot-time drop-in then replaces the unit's ExecStartPre with the prestart
    #: followed by the config test.
    replaces_unit_config_check = False

    def onboard(self, lines: list[str], config_path: str, key_dir: str, include_file: str) -> tuple[list[str], int]:
        """The config with the managed keys loaded, and how many places changed; raises Unsafe."""
        raise NotImplementedError

    def key_file_name(self, index: int, name: str) -> str:
        """The file of the set's key number `index` (0: current) in its generation directory."""
        return "%02d-%s.key" % (index, name)

    def runtime_api(self, socket_path: str, include_file: str) -> RuntimeApi | None:
        """The server's runtime API at `socket_path`, when it takes new keys that way instead of a reload."""
        return None

    def set_problem(self, names: list[str], key_length: int) -> str | None:
        """Why this server cannot hold the key set, or None."""
        return None

    def render_include(self, generation: int, names: list[str], materials: list[bytes], directory: str) -> str:
        """The include for a generation whose key files sit in `directory`."""
        raise NotImplementedError

    #: The include's line that names a key file, its directory the first group; None: the include names no files.
    key_file_line: re.Pattern[str] | None = None

    def referenced_directory(self, include_text: str) -> str | None:
        """The generation directory an include names, if it names one (the server may still load its files)."""
        for line in include_text.splitlines() if self.key_file_line else ():
            match = self.key_file_line.match(line.strip())
            if match:
                return match.group(1)
        return None

    def config_loads_keys(self, dump: str, include_file: str) -> bool:
        """Whether the config the server loads (its dump) loads `include_file`."""
        raise NotImplementedError

    def how_to_load_keys(self, include_file: str) -> str:
        """What to add to the config so that it loads `include_file`."""
        raise NotImplementedError


class RuntimeApi:
    """A running server's API for its keys (--runtime-socket)."""

    def check(self, trusted_owners: set[int], owner: str) -> None:
        """Before anything is touched: raises Refused unless only trusted users can reach it and it holds the keys the applier writes."""
        raise NotImplementedError

    def differs_from(self, file_keys: list[str]) -> bool:
        """Whether the running keys differ from the keys file's lines (or cannot be read)."""
        raise NotImplementedError

    def update(self, file_keys: list[str]) -> str | None:
        """Makes the running keys follow the file: None when they do; else what failed, the previous
        keys running again. Raises RuntimeFailure when not even they could be restored."""
        raise NotImplementedError


class RuntimeFailure(Exception):
    pass


def uncommented(line: str) -> str:
    return line.split("#", 1)[0]


def code_of(line: str) -> str:
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


#: What onboarding writes beside each line it adds.
MARK = "# TLS session ticket keys, managed by apply-ticket-keys.sh"


def all_flavors() -> dict[str, Flavor]:
    from flavors import apache, haproxy, nginx

    return {flavor.name: flavor for flavor in (nginx.FLAVOR, haproxy.FLAVOR, apache.FLAVOR)}
