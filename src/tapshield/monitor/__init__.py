"""Watch: streaming metrics per slice, detectors, four-level warnings, alert lifecycle."""
