"""Self-contained HTML reports (Jinja2 templates, inline SVG charts, no CDN)."""

from tapshield.report.html import AnalysisLike, ReportSection, impact_section, render_report

__all__ = ["AnalysisLike", "ReportSection", "impact_section", "render_report"]
