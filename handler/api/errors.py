"""Exceptions that carry a user-facing message: one kind per audience."""

from __future__ import annotations


class RequestError(Exception):
    """A problem with one request; it becomes that request's 4xx response, never the batch's.

    ``reason`` is a short fixed word for metrics (the message itself may quote the request).
    """

    def __init__(self, message: str, status: int = 400, reason: str = "bad_request") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason


class ConfigurationError(Exception):
    """A bad model folder, mapping or handler setting; it fails ``initialize()`` with this message."""
