"""A rejects file that exists only if something was rejected (see :mod:`tapshield.events.rejects`)."""

from __future__ import annotations

from tapshield.events.rejects import RejectWriter as RejectFile

__all__ = ["RejectFile"]
