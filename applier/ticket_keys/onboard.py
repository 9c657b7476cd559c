"""Onboarding: `python3 -I -S applier/ticket_keys/onboard.py [options]` (onboard-node.sh runs it)."""

import os
import sys

# -I leaves the program's own directory off the path, as it leaves off every other.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from onboarding import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
