"""Exceptions of the chains app."""

from __future__ import annotations


class SnapshotContention(RuntimeError):
    """A chain snapshot kept changing while a REST merge tried to replace it."""


class RepopulateFailed(RuntimeError):
    """A REST repopulation run could not refresh every chain it should (the message lists them)."""


class ContractError(ValueError):
    """A record from another process lacks a key its type requires (``chains.contracts``)."""
