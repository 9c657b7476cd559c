"""Apache httpd with mod_ssl: an include holding one `SSLSessionTicketKeyFile` line, which names
one 48-byte key file (key name, HMAC secret, AES key), read at start and at a graceful restart,
and only in the server config. It holds no next and no previous key.
https://httpd.apache.org/docs/2.4/mod/mod_ssl.html#sslsessionticketkeyfile"""

from __future__ import annotations

import fnmatch
import os
import re

from errors import Unsafe
from flavors import MARK, Flavor

KEY_LENGTH = 48
KEY_FILE_LINE = re.compile(r"^SSLSessionTicketKeyFile (.+)/[^/]+$")
#: A line of `apache2ctl -t -D DUMP_INCLUDES`: the line that included it (or * for the main config), then the file.
INCLUDED_FILE = re.compile(r"^\s*\((?:\*|\d+)\)\s+(.*\S)\s*$")


def directives(lines: list[str]):
    """Each directive with its words and the number of its first line; a line ending in a
    backslash goes on on the next line. Apache's comments take whole lines."""
    pending: list[str] = []
    start = 0
    for number, line in enumerate(lines):
        text = line.rstrip("\n")
        if not pending:
            start = number
            if text.lstrip().startswith("#"):
                continue
        if text.endswith("\\"):
            pending.append(text[:-1])
            continue
        words = " ".join(pending + [text]).split()
        pending = []
        if words:
            yield start, words


class Apache(Flavor):
    name = "apache"
    include_file_name = "ticket-keys.conf"
    test_command = "apache2ctl configtest"
    dump_command = "apache2ctl -t -D DUMP_INCLUDES"
    reload_command = "systemctl reload apache2"
    key_file_line = KEY_FILE_LINE
    held_keys = 1
    # Debian's and Ubuntu's unit; Red Hat's family names it httpd.
    unit = "apache2"

    def set_problem(self, names: list[str], key_length: int) -> str | None:
        if key_length == KEY_LENGTH:
            return None
        return (
            "key set holds %d-byte keys but Apache reads %d-byte ticket keys (SSLSessionTicketKeyFile): "
            "make the fleet's set with %d-byte keys" % (key_length, KEY_LENGTH, KEY_LENGTH)
        )

    def render_include(self, generation: int, names: list[str], materials: list[bytes], directory: str) -> str:
        return "# Managed by apply-ticket-keys.sh: generation %d. Do not edit; the next rotation replaces it.\nSSLSessionTicketKeyFile %s\n" % (
            generation,
            os.path.join(directory, self.key_file_name(0, names[0])),
        )

    def config_loads_keys(self, dump: str, include_file: str) -> bool:
        """The include among the files the server reads: `-D DUMP_INCLUDES` lists each one."""
        return any(match.group(1) == include_file for match in map(INCLUDED_FILE.match, dump.splitlines()) if match)

    def how_to_load_keys(self, include_file: str) -> str:
        return "add `IncludeOptional %s` to the main config, outside any <VirtualHost> (the onboarding step does it)" % include_file

    def onboard(self, lines: list[str], config_path: str, key_dir: str, include_file: str) -> tuple[list[str], int]:
        """`IncludeOptional` of the managed file at the end of the main config, outside every
        section (the key file is a server-wide setting: an include inside a section does not count). Optional, so that Apache still starts
        before the first key set is applied (with keys of its own, shared with no other node)."""
        if re.search(r"[*?\[\]\s'\"{}#\\]", include_file):
            raise Unsafe("--include %s has characters Apache would read as a pattern or syntax: use a plain file name" % include_file)
        depth = 0
        included = False
        for number, words in directives(lines):
            directive = words[0].lower()
            if directive.startswith("</"):
                depth -= 1
                if depth < 0:
                    raise Unsafe("line %d closes a section that was never opened: fix %s" % (number + 1, config_path))
            elif directive.startswith("<"):
                depth += 1
            elif directive == "sslsessionticketkeyfile":
                raise Unsafe("line %d sets SSLSessionTicketKeyFile: the managed key replaces it; remove that line, then run again" % (number + 1))
            elif directive == "sslsessiontickets" and words[1:2] and words[1].lower() == "off":
                raise Unsafe("line %d turns session tickets off (SSLSessionTickets off): remove it, then run again" % (number + 1))
            elif directive in ("include", "includeoptional") and len(words) > 1 and depth == 0:
                pattern = words[1].strip("\"'")
                if pattern == include_file or fnmatch.fnmatchcase(include_file, pattern):
                    included = True
        if depth != 0:
            raise Unsafe("%s leaves %d section(s) open: fix it, then run again" % (config_path, depth))
        if included:
            return list(lines), 0
        out = list(lines)
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out += ["%s\n" % MARK, "IncludeOptional %s\n" % include_file]
        return out, 1


FLAVOR = Apache()
