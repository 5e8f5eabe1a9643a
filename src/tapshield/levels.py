"""The four warning levels, named once.

Alerts (:mod:`tapshield.monitor`) and incidents (:mod:`tapshield.incident`)
carry a level from 1 (red, the worst) to 4 (blue, a notice that pages no one);
reports, notifications and metrics name them through :data:`LEVEL_NAMES`.
"""

from __future__ import annotations

from typing import Final

LEVEL_NAMES: Final[dict[int, str]] = {1: "red", 2: "orange", 3: "yellow", 4: "blue"}
NOTICE: Final = 4
"""The level of a detected wave that meets none of the paging criteria."""
