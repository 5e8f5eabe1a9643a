"""tapshield: keep consumer-credit tap-to-pay working and safe.

The package is organised by capability (``events``, ``simulate``, ``monitor``,
``diagnose``, ``route``, ``respond``, ``impact``) with adapters (``storage``,
``cli``) at the edges; see docs/ARCHITECTURE.md for the map.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
