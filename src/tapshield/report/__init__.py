"""Self-contained HTML reports (Jinja2 templates, inline SVG charts, no CDN)."""

from tapshield.report.html import ReportSection, render_report

__all__ = ["ReportSection", "render_report"]
