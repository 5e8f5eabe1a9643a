"""The web console of ``tapshield serve``: what on-call, risk teams and credit officers
look at (Now, Incident, Impact, Risk), signed in with passkeys or API keys.

An edge package: it reads through the service's runtime and the report's
presentation rules, and nothing imports it but the service app, which mounts
:func:`build_router` with one line.
"""

from tapshield.console.routes import build_router

__all__ = ["build_router"]
