"""Watch: streaming metrics per slice, detectors, four-level warnings, alert lifecycle.

The pipeline's interface::

    monitor = Monitor(MonitorConfig.load(path_or_None), changes=changes_frame_or_None)
    alert_events = monitor.process(batch)   # canonical events in event-time order
    alert_events += monitor.close()         # end of stream
    monitor.timeline()                      # per-bucket national series

See docs/monitoring.md for the statistics and the alert lifecycle.
"""

from tapshield.monitor.alerts import AlertEvent
from tapshield.monitor.config import MonitorConfig
from tapshield.monitor.levels import LevelCriteria
from tapshield.monitor.monitor import Monitor

__all__ = ["AlertEvent", "LevelCriteria", "Monitor", "MonitorConfig"]
