"""How a step stops the run."""


class Refused(Exception):
    """The run stops with exit `code` and this message, having changed nothing."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class Unsafe(Exception):
    """A server config onboarding cannot change safely: why, and what to do."""
