"""The payment-event and changes contracts: schema, validation, readers, writers.

Everything downstream consumes the *canonical* event frame defined in
:mod:`tapshield.events.schema`; :class:`EventReader` turns any supported file
into a stream of such frames, with every rejected row accounted for.
"""

from tapshield.errors import ContractError, RowError
from tapshield.events.changes import CHANGES, read_changes
from tapshield.events.idindex import EventIdIndex
from tapshield.events.read import EventReader, ReadStats, read_events
from tapshield.events.schema import (
    CANONICAL_SCHEMA,
    CONTRACT_VERSION,
    DIMENSIONS,
    OUTCOMES,
    empty_events,
)
from tapshield.events.validate import ValidationResult, validate_frame
from tapshield.events.write import EventWriter, write_events

__all__ = [
    "CANONICAL_SCHEMA",
    "CHANGES",
    "CONTRACT_VERSION",
    "DIMENSIONS",
    "OUTCOMES",
    "ContractError",
    "EventIdIndex",
    "EventReader",
    "EventWriter",
    "ReadStats",
    "RowError",
    "ValidationResult",
    "empty_events",
    "read_changes",
    "read_events",
    "validate_frame",
    "write_events",
]
