"""Runs the node applier (`python3 -I -S applier/ticket_keys/__main__.py ARGS`, as its wrapper does) with each of
its side effects counted: every file it opens for writing, creates, renames, links, changes or
removes, every command it starts and every socket it connects. At side effect number CRASH_AT
it kills its whole process group with SIGKILL, before that effect happens, as an instance losing
power would. The count is kept in the file CRASH_COUNTER, shared with the shell shims that count
the commands. Python's audit hooks (PEP 578) see every such call, so the applier itself carries
no test code."""

import os
import runpy
import signal
import sys

COUNTED = {
    "os.chmod", "os.chown", "os.link", "os.mkdir", "os.remove", "os.rename", "os.rmdir", "os.symlink", "os.truncate",
    "os.posix_spawn", "shutil.rmtree", "socket.connect",
}
WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
COUNTER = os.environ["CRASH_COUNTER"]
CRASH_AT = int(os.environ["CRASH_AT"])
counting = True


def is_side_effect(event, args):
    if event == "open":
        return isinstance(args[2], int) and args[2] & WRITING != 0
    return event in COUNTED


def count(event, args):
    global counting
    if not counting or not is_side_effect(event, args):
        return
    counting = False  # the counter's own file operations are not the applier's
    try:
        fd = os.open(COUNTER, os.O_RDWR)
        calls = int(os.read(fd, 32) or b"0") + 1
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, b"%d\n" % calls)
        os.close(fd)
        if calls == CRASH_AT:
            os.killpg(os.getpgrp(), signal.SIGKILL)
    finally:
        counting = True


def main():
    args = sys.argv[1:]
    while args and args[0].startswith("-"):
        args.pop(0)  # the interpreter's own options (-I -S)
    program, sys.argv = args[0], args
    # Bytecode written on a first run would count as side effects that later runs lack.
    sys.dont_write_bytecode = True
    sys.addaudithook(count)
    runpy.run_path(program, run_name="__main__")


main()
