"""What the applier and onboarding share on their command line: how a run stops, and options."""

from __future__ import annotations


class Stop(Exception):
    """Ends the run: its exit code, the summary's action and what went wrong."""

    def __init__(self, code: int, action: str, message: str):
        super().__init__(message)
        self.code = code
        self.action = action


def parse_options(argv: list[str], options: object, values: dict[str, str], flags: dict[str, str]) -> None:
    """Sets `options`' attributes from argv: `values` names each option that takes a value and its
    attribute, `flags` each one that does not. --help (or -h) sets `help` and stops reading."""
    rest = list(argv)
    while rest:
        option = rest.pop(0)
        if option in values:
            if not rest:
                raise Stop(2, "refused", "option %s needs a value (see --help)" % option)
            setattr(options, values[option], rest.pop(0))
        elif option in flags:
            setattr(options, flags[option], True)
        elif option in ("-h", "--help"):
            setattr(options, "help", True)
            return
        else:
            raise Stop(2, "refused", "unknown option %s (see --help)" % option)
