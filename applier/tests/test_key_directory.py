import os
import stat
import tempfile
import unittest

from flavors import all_flavors
from key_directory import KeyDirectory, make_directory, write_temporary


class KeyDirectoryTest(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="key-directory-test-")
        os.chmod(self.root, 0o700)
        self.path = os.path.join(self.root, "keys")
        self.keys = KeyDirectory(self.path, os.path.join(self.path, "ticket-keys.conf"), all_flavors()["nginx"])

    def tearDown(self):
        for directory, subdirectories, files in os.walk(self.root, topdown=False):
            for name in files:
                os.unlink(os.path.join(directory, name))
            for name in subdirectories:
                os.rmdir(os.path.join(directory, name))
        os.rmdir(self.root)

    def test_new_files_and_directories_have_unique_names_and_private_modes(self):
        first = write_temporary(self.root, ".state.", b"{}", 0o600)
        second = write_temporary(self.root, ".state.", b"{}", 0o600)
        self.assertNotEqual(first, second)
        self.assertEqual(stat.S_IMODE(os.lstat(first).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.lstat(make_directory(self.root, "gen-1.")).st_mode), 0o700)

    def test_a_key_directory_others_can_write_is_refused_naming_it(self):
        os.mkdir(self.path)
        os.chmod(self.path, 0o770)
        self.assertIn("--key-dir %s is writable by its group" % self.path, self.keys.unsafe_paths())
        os.chmod(self.path, 0o700)
        self.assertIsNone(self.keys.unsafe_paths())

    def test_after_an_apply_only_what_it_wrote_is_left(self):
        self.keys.make()
        staged = self.keys.stage(3, ["aa", "bb"], [b"a" * 48, b"b" * 48])
        os.replace(staged.include_tmp, self.keys.include_file)
        os.replace(staged.state_tmp, self.keys.join("active.json"))
        for leftover in ("gen-2.old", "a.conf"):
            os.mkdir(self.keys.join(leftover))
        self.keys.keep_only(staged.directory)
        self.assertEqual(sorted(os.listdir(self.path)), sorted(["active.json", "ticket-keys.conf", os.path.basename(staged.directory)]))
        state = self.keys.read_state()
        self.assertEqual((state.generation, state.names), (3, ["aa", "bb"]))
        self.assertIsNone(self.keys.active_set_problem(state))

    def test_a_state_file_that_is_not_the_applier_s_reads_as_none(self):
        self.keys.make()
        with open(self.keys.join("active.json"), "w") as handle:
            handle.write('{"generation": "2"}')
        self.assertIsNone(self.keys.read_state())
