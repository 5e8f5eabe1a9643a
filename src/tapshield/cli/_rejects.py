"""A rejects file that exists only if something was rejected.

The writer is :class:`tapshield.events.rejects.RejectWriter` (next to the other writers).
"""

from __future__ import annotations

from tapshield.events.rejects import RejectWriter as RejectFile

__all__ = ["RejectFile"]
