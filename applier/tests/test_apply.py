import json
import unittest

from apply import ServerCommands, Summary, parse_options
from command_line import Stop
from key_directory import filesystem_of


class OptionsTest(unittest.TestCase):
    def test_a_value_option_at_the_end_and_an_unknown_option_are_refused_by_name(self):
        with self.assertRaises(Stop) as missing:
            parse_options(["--key-dir"])
        self.assertEqual((missing.exception.code, str(missing.exception)), (2, "option --key-dir needs a value (see --help)"))
        with self.assertRaises(Stop) as unknown:
            parse_options(["--key-dri", "/run/k"])
        self.assertEqual(str(unknown.exception), "unknown option --key-dri (see --help)")

    def test_help_stops_reading_options(self):
        self.assertTrue(parse_options(["--help", "--no-such-option"]).help)


class SummaryTest(unittest.TestCase):
    def test_fields_in_order_and_only_when_known(self):
        summary = Summary()
        self.assertEqual(summary.line(8), '{"action":"failed","flavor":"nginx","exitCode":8,"keys":[]}')
        summary.action, summary.generation, summary.keys, summary.previous_generation = "applied", 3, ["aa"], 2
        summary.via, summary.key_storage, summary.removed = "reload", "ext4", ["a.conf"]
        self.assertEqual(
            list(json.loads(summary.line(0)).items()),
            [("action", "applied"), ("flavor", "nginx"), ("exitCode", 0), ("generation", 3), ("keys", ["aa"]), ("previousGeneration", 2),
             ("via", "reload"), ("keyStorage", "ext4"), ("keysInMemory", False), ("removed", ["a.conf"])],
        )


class ServerCommandsTest(unittest.TestCase):
    def test_a_failed_command_gives_its_last_three_lines_and_a_dump_its_output(self):
        commands = ServerCommands("printf 'a\\nb\\nc\\nd\\n'; exit 1", "echo 'include /x;'; echo warning >&2", "true")
        self.assertEqual(commands.attempt(commands.test), "b c d")
        self.assertIsNone(commands.attempt(commands.reload))
        self.assertEqual(commands.config_dump(), ("include /x;\n", ""))


class FilesystemTest(unittest.TestCase):
    def test_a_path_not_made_yet_is_on_its_nearest_existing_parent_s_filesystem(self):
        self.assertEqual(filesystem_of("/proc/no/such/path"), "proc")
