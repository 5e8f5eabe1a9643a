"""The running service (``tapshield serve``): an HTTP edge over the router,
the tap book, the stores and (phase 2) the live monitor.

* :mod:`~tapshield.service.config` - one config file, environment on top;
* :mod:`~tapshield.service.keys` - hashed API keys and roles;
* :mod:`~tapshield.service.taps` - the tap book across workers and restarts;
* :mod:`~tapshield.service.decision` - the decision port (rules now, the risk engine later);
* :mod:`~tapshield.service.runtime` - what one worker runs; checkpoints;
* :mod:`~tapshield.service.app` - FastAPI routes, access, limits, logs, metrics;
* :mod:`~tapshield.service.server` - uvicorn, workers, graceful stop.

Docs: docs/service.md.
"""
