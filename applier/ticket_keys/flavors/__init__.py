"""Server flavors: each one a driver behind the one interface below, in a file of its own. The
applier knows no flavor by name; an unknown one is refused, never treated like another."""

from __future__ import annotations


class Flavor:
    """What the applier needs to know of a server."""

    name = ""
    #: The defaults of --test-cmd, --config-dump-cmd and --reload-cmd.
    test_command = ""
    dump_command = ""
    reload_command = ""
    #: Whether the include holds the keys themselves (then it is written 0600), or names key files.
    include_holds_keys = False
    #: Whether a running server takes new keys through a runtime API (--runtime-socket) instead of a reload.
    has_runtime_api = False

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

    def referenced_directory(self, include_text: str) -> str | None:
        """The generation directory an include names, if it names one (the server may still load its files)."""
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


def all_flavors() -> dict[str, Flavor]:
    from flavors import haproxy, nginx

    return {flavor.name: flavor for flavor in (nginx.FLAVOR, haproxy.FLAVOR)}
