"""Adapter: state shared between processes through Redis.

The domain declares what it shares through a port (:class:`tapshield.route.HealthShare`
for the router's evidence); this package implements it on a network store, so
no domain package imports a network client. :class:`RedisShare` is the Redis
streams adapter (see :mod:`tapshield.share.redis`).
"""
