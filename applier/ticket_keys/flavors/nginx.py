"""nginx: an include of `ssl_session_ticket_key` lines naming one file per key, the first
encrypting, all decrypting (http://nginx.org/en/docs/http/ngx_http_ssl_module.html#ssl_session_ticket_key)."""

from __future__ import annotations

import fnmatch
import re
import os

from errors import Unsafe
from flavors import MARK, Flavor, code_of, uncommented

KEY_FILE_LINE = re.compile(r"^ssl_session_ticket_key (.+)/[^/]+;$")
INCLUDE_DIRECTIVE = re.compile(r"(?:^|[\s;{}])include\s+[\"']?([^\s;\"']+)[\"']?\s*;")


class Nginx(Flavor):
    name = "nginx"
    include_file_name = "ticket-keys.conf"
    test_command = "nginx -t -q"
    dump_command = "nginx -T"
    reload_command = "systemctl reload nginx"
    key_file_line = KEY_FILE_LINE

    def render_include(self, generation: int, names: list[str], materials: list[bytes], directory: str) -> str:
        lines = ["# Managed by apply-ticket-keys.sh: generation %d. Do not edit; the next rotation replaces it." % generation]
        lines += ["ssl_session_ticket_key %s;" % os.path.join(directory, self.key_file_name(index, name)) for index, name in enumerate(names)]
        return "\n".join(lines) + "\n"

    def config_loads_keys(self, dump: str, include_file: str) -> bool:
        """An include whose path or pattern matches the include file: nginx -T prints every config file verbatim."""
        for line in dump.splitlines():
            for pattern in INCLUDE_DIRECTIVE.findall(uncommented(line)):
                if fnmatch.fnmatchcase(include_file, pattern):
                    return True
        return False

    def how_to_load_keys(self, include_file: str) -> str:
        return "add `include %s[%s];` to each server block that terminates TLS (the onboarding step does it)" % (include_file[:-1], include_file[-1])


    def onboard(self, lines: list[str], config_path: str, key_dir: str, include_file: str) -> tuple[list[str], int]:
        """An include of the managed file after the TLS `listen` of each server block. The include
        names the file alone, as a pattern that matches nothing else, so that nginx still starts
        with an empty key directory and never loads a file planted beside it."""
        if re.search(r"[*?\[\]\s;'\"{}#$]", include_file):
            raise Unsafe("--include %s has characters nginx would read as a pattern or syntax: use a plain file name" % include_file)
        pattern = include_file[:-1] + "[" + include_file[-1] + "]"
        broad = key_dir + "/*.conf"  # what earlier versions added
        blocks: list[dict] = []
        stack: list[str] = []
        statement: list[str] = []
        start_line = None
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
                            raise Unsafe(
                                "the TLS listen at line %d shares its line with other statements: put it on a line of its own, "
                                "or add `include %s;` to that server block by hand" % (number + 1, pattern)
                            )
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
            indent = listen[: len(listen) - len(listen.lstrip())]
            out.insert(block["listen"] + 1, "%sinclude %s;  %s\n" % (indent, pattern, MARK))
            changed += 1
        return out, changed


FLAVOR = Nginx()
