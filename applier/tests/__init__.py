"""Unit tests of the node applier's program (applier/ticket_keys), run by `npm test`
(test/unit/applier-program.test.ts): `python3 -m unittest discover -s applier/tests -t applier`."""

import os
import sys

# The program imports its modules by their own names, as its __main__.py arranges.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ticket_keys"))
