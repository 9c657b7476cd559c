import unittest

from flavors import all_flavors
from flavors.haproxy import file_layout, file_order

A, B, C = b"a" * 48, b"b" * 48, b"c" * 48


class RegistryTest(unittest.TestCase):
    def test_each_flavor_once_under_its_own_name(self):
        self.assertEqual(sorted(all_flavors()), ["apache", "haproxy", "nginx"])
        for name, flavor in all_flavors().items():
            self.assertEqual(flavor.name, name)
            self.assertTrue(flavor.test_command and flavor.dump_command and flavor.reload_command, name)


class HAProxyTest(unittest.TestCase):
    haproxy = all_flavors()["haproxy"]

    def test_file_order_is_previous_current_next_with_the_current_key_repeated_when_there_is_no_previous(self):
        self.assertEqual(file_order([A, B]), [A, A, B])
        self.assertEqual(file_order([A, B, C]), [C, A, B])

    def test_80_byte_keys_swap_hmac_and_aes(self):
        raw = bytes(range(80))
        self.assertEqual(file_layout(raw), raw[:16] + raw[48:] + raw[16:48])
        self.assertEqual(file_layout(A), A)

    def test_holds_three_keys_and_says_what_to_change_beyond(self):
        self.assertIsNone(self.haproxy.set_problem(["1", "2", "3"], 80))
        self.assertIn("keeps 2 previous keys but HAProxy holds 3 keys", self.haproxy.set_problem(["1", "2", "3", "4"], 80))

    def test_a_bind_line_loads_the_file_and_a_comment_does_not(self):
        self.assertTrue(self.haproxy.config_loads_keys("  bind :443 ssl crt /c.pem tls-ticket-keys /run/k/t\n", "/run/k/t"))
        self.assertFalse(self.haproxy.config_loads_keys("  # bind :443 ssl tls-ticket-keys /run/k/t\n", "/run/k/t"))
        self.assertFalse(self.haproxy.config_loads_keys("  bind :443 ssl tls-ticket-keys /run/k/t2\n", "/run/k/t"))


class NginxTest(unittest.TestCase):
    nginx = all_flavors()["nginx"]

    def test_an_include_by_name_or_by_pattern_loads_the_file_and_a_comment_does_not(self):
        include = "/run/tls-ticket-keys/ticket-keys.conf"
        self.assertTrue(self.nginx.config_loads_keys("server { include /run/tls-ticket-keys/ticket-keys.con[f]; }", include))
        self.assertTrue(self.nginx.config_loads_keys('    include "/run/tls-ticket-keys/*.conf";', include))
        self.assertFalse(self.nginx.config_loads_keys("    # include /run/tls-ticket-keys/ticket-keys.conf;", include))
        self.assertFalse(self.nginx.config_loads_keys("    include /etc/nginx/conf.d/*.conf;", include))

    def test_the_include_names_each_key_file_current_first_and_its_directory_is_read_back(self):
        text = self.nginx.render_include(7, ["aa", "bb"], [A, B], "/run/k/gen-7.x")
        self.assertEqual(
            text.splitlines()[1:],
            ["ssl_session_ticket_key /run/k/gen-7.x/00-aa.key;", "ssl_session_ticket_key /run/k/gen-7.x/01-bb.key;"],
        )
        self.assertEqual(self.nginx.referenced_directory(text), "/run/k/gen-7.x")
        self.assertIsNone(self.nginx.referenced_directory("# nothing here\n"))


class ApacheTest(unittest.TestCase):
    apache = all_flavors()["apache"]

    def test_holds_the_current_key_alone_and_only_48_byte_keys(self):
        self.assertEqual(self.apache.held_keys, 1)
        self.assertIsNone(self.apache.set_problem(["1", "2", "3", "4"], 48))
        self.assertEqual(
            self.apache.set_problem(["1", "2"], 80),
            "key set holds 80-byte keys but Apache reads 48-byte ticket keys (SSLSessionTicketKeyFile): make the fleet's set with 48-byte keys",
        )

    def test_the_include_names_the_current_key_file_and_its_directory_is_read_back(self):
        text = self.apache.render_include(7, ["aa", "bb", "cc"], [A], "/run/k/gen-7.x")
        self.assertEqual(text.splitlines()[1:], ["SSLSessionTicketKeyFile /run/k/gen-7.x/00-aa.key"])
        self.assertEqual(self.apache.referenced_directory(text), "/run/k/gen-7.x")
        self.assertIsNone(self.apache.referenced_directory("# SSLSessionTicketKeyFile /elsewhere/k\n"))

    def test_the_include_is_loaded_when_the_include_dump_lists_it(self):
        dump = "Included configuration files:\n  (*) /etc/apache2/apache2.conf\n    (230) /run/k/ticket-keys.conf\n"
        self.assertTrue(self.apache.config_loads_keys(dump, "/run/k/ticket-keys.conf"))
        self.assertFalse(self.apache.config_loads_keys(dump, "/run/k/ticket-keys.con"))
        self.assertFalse(self.apache.config_loads_keys("IncludeOptional /run/k/ticket-keys.conf\n", "/run/k/ticket-keys.conf"))


class OnboardingEditsTest(unittest.TestCase):
    include = "/run/tls-ticket-keys/ticket-keys.conf"

    def test_nginx_gains_the_include_after_each_tls_listen_once(self):
        nginx = all_flavors()["nginx"]
        config = ["http {\n", "  server {\n", "    listen 443 ssl;\n", "  }\n", "  server {\n", "    listen 80;\n", "  }\n", "}\n"]
        edited, changed = nginx.onboard(config, "/etc/nginx/nginx.conf", "/run/tls-ticket-keys", self.include)
        self.assertEqual(changed, 1)
        self.assertTrue(edited[3].startswith("    include /run/tls-ticket-keys/ticket-keys.con[f];"))
        self.assertEqual(nginx.onboard(edited, "/etc/nginx/nginx.conf", "/run/tls-ticket-keys", self.include)[1], 0)

    def test_nginx_refuses_tickets_turned_off_naming_the_line(self):
        from errors import Unsafe

        config = ["server {\n", "  listen 443 ssl;\n", "  ssl_session_tickets off;\n", "}\n"]
        with self.assertRaises(Unsafe) as refused:
            all_flavors()["nginx"].onboard(config, "/etc/nginx/nginx.conf", "/run/tls-ticket-keys", self.include)
        self.assertEqual(str(refused.exception), "line 3 turns session tickets off (ssl_session_tickets off): remove it, then run again")

    def test_haproxy_bind_lines_with_ssl_gain_the_keys_file(self):
        haproxy = all_flavors()["haproxy"]
        config = ["frontend tls\n", "  bind :443 ssl crt /c.pem  # public\n", "  bind :80\n"]
        edited, changed = haproxy.onboard(config, "/etc/haproxy/haproxy.cfg", "/run/k", "/run/k/tls-ticket-keys")
        self.assertEqual(changed, 1)
        self.assertEqual(edited[1], "  bind :443 ssl crt /c.pem tls-ticket-keys /run/k/tls-ticket-keys  # public\n")
        self.assertEqual(edited[2], "  bind :80\n")
        self.assertEqual(len(haproxy.own_keys().split()), 3)

    def test_apache_gains_one_optional_include_at_the_end_outside_every_section(self):
        apache = all_flavors()["apache"]
        config = ["ServerRoot /etc/apache2\n", "<VirtualHost *:443>\n", "  SSLEngine on\n", "</VirtualHost>"]
        edited, changed = apache.onboard(config, "/etc/apache2/apache2.conf", "/run/tls-ticket-keys", self.include)
        self.assertEqual(changed, 1)
        self.assertEqual(edited[3:], ["</VirtualHost>\n", "# TLS session ticket keys, managed by apply-ticket-keys.sh\n", "IncludeOptional %s\n" % self.include])
        self.assertEqual(apache.onboard(edited, "/etc/apache2/apache2.conf", "/run/tls-ticket-keys", self.include), (edited, 0))
        self.assertEqual(apache.onboard(["Include /run/tls-ticket-keys/*.conf\n"], "/c", "/run/tls-ticket-keys", self.include)[1], 0)
        # Inside a virtual host the key file is not allowed: that include does not count.
        inside = ["<VirtualHost *:443>\n", "  Include %s\n" % self.include, "</VirtualHost>\n"]
        self.assertEqual(apache.onboard(inside, "/c", "/run/tls-ticket-keys", self.include)[1], 1)

    def test_apache_refuses_keys_of_its_own_tickets_off_and_open_sections_naming_the_line(self):
        from errors import Unsafe

        apache = all_flavors()["apache"]
        cases = [
            (["<VirtualHost *:443>\n", "  SSLSessionTickets Off\n", "</VirtualHost>\n"], "line 2 turns session tickets off (SSLSessionTickets off): remove it, then run again"),
            (["SSLSessionTicketKeyFile \\\n", "  /etc/apache2/ticket.key\n"], "line 1 sets SSLSessionTicketKeyFile: the managed key replaces it; remove that line, then run again"),
            (["<IfModule ssl_module>\n"], "/c leaves 1 section(s) open: fix it, then run again"),
            (["</IfModule>\n"], "line 1 closes a section that was never opened: fix /c"),
        ]
        for config, message in cases:
            with self.assertRaises(Unsafe) as refused:
                apache.onboard(config, "/c", "/run/tls-ticket-keys", self.include)
            self.assertEqual(str(refused.exception), message)
        with self.assertRaises(Unsafe):
            apache.onboard([], "/c", "/run/k", "/run/k/ticket keys.conf")
        # A comment is no directive, even one that names the directives above.
        self.assertEqual(apache.onboard(["# SSLSessionTickets off\n"], "/c", "/run/tls-ticket-keys", self.include)[1], 1)
