"""The exceptions mqkv raises: one per library status code (mqkv/status.h).

Every one carries ``code`` (the library's code name), ``reason`` (the message without the file and
offset), ``file`` (the path or URL it concerns, or None) and ``offset`` (the byte offset, or None).
``str(e)`` is the library's one-line form, "FILE: at byte N: REASON".
"""
from __future__ import annotations


class Error(Exception):
    """Base class of every mqkv error."""

    code: str = "internal"
    reason: str = ""
    file: str | None = None
    offset: int | None = None


class InvalidArgument(Error, ValueError):
    """A caller error: a bad option, codec spec, dtype or shape."""


class OutOfRange(InvalidArgument, IndexError):
    """A request outside the data: a token range, layer or tensor that is not there."""


class FormatError(Error):
    """The input is malformed or inconsistent (bad input)."""


class ChecksumMismatch(FormatError):
    """Stored bytes do not match their checksum."""


class Unsupported(Error):
    """Well-formed input that uses something this build cannot handle."""


class IoError(Error, OSError):
    """Opening, reading, writing, renaming or syncing a file (or fetching a URL) failed."""
