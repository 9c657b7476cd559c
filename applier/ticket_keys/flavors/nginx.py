"""nginx: an include of `ssl_session_ticket_key` lines naming one file per key, the first
encrypting, all decrypting (http://nginx.org/en/docs/http/ngx_http_ssl_module.html#ssl_session_ticket_key)."""

from __future__ import annotations

import fnmatch
import re
import os

from flavors import Flavor, uncommented

INCLUDE_LINE = re.compile(r"^ssl_session_ticket_key (.+)/[^/]+;$")
INCLUDE_DIRECTIVE = re.compile(r"(?:^|[\s;{}])include\s+[\"']?([^\s;\"']+)[\"']?\s*;")


class Nginx(Flavor):
    name = "nginx"
    test_command = "nginx -t -q"
    dump_command = "nginx -T"
    reload_command = "systemctl reload nginx"

    def render_include(self, generation: int, names: list[str], materials: list[bytes], directory: str) -> str:
        lines = ["# Managed by apply-ticket-keys.sh: generation %d. Do not edit; the next rotation replaces it." % generation]
        lines += ["ssl_session_ticket_key %s;" % os.path.join(directory, self.key_file_name(index, name)) for index, name in enumerate(names)]
        return "\n".join(lines) + "\n"

    def referenced_directory(self, include_text: str) -> str | None:
        for line in include_text.splitlines():
            match = INCLUDE_LINE.match(line.strip())
            if match:
                return match.group(1)
        return None

    def config_loads_keys(self, dump: str, include_file: str) -> bool:
        """An include whose path or pattern matches the include file: nginx -T prints every config file verbatim."""
        for line in dump.splitlines():
            for pattern in INCLUDE_DIRECTIVE.findall(uncommented(line)):
                if fnmatch.fnmatchcase(include_file, pattern):
                    return True
        return False

    def how_to_load_keys(self, include_file: str) -> str:
        return "add `include %s[%s];` to each server block that terminates TLS (the onboarding step does it)" % (include_file[:-1], include_file[-1])


FLAVOR = Nginx()
