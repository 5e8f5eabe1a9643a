"""Adapter: Prometheus exposition of the domain's state.

Collectors read a domain object when Prometheus scrapes (nothing is updated on
the hot path) and live here, at the edge, so the domain packages never import
``prometheus_client``: :class:`MonitorCollector` for the monitor
(:mod:`tapshield.metrics.monitor`), :class:`RouterCollector` for a router
(:mod:`tapshield.metrics.route`).
"""
