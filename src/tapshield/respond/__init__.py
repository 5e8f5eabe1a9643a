"""Respond: incident handling (and, with the route package, keeping taps succeeding).

:class:`IncidentBook` turns the monitor's alert lifecycle into incidents: one
incident per alert (wave), diagnosed the moment it fires, re-diagnosed when it
escalates, its cost measured from the events as they stream past.
"""

from tapshield.respond.incidents import IncidentBook, IncidentPolicy, TapLedger

__all__ = ["IncidentBook", "IncidentPolicy", "TapLedger"]
