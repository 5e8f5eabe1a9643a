"""Respond: failover routing that keeps taps succeeding while a channel is down.

* :class:`Router` picks the channel of each attempt from statistically
  justified health (:mod:`tapshield.route.stats`): fast elimination of a dead
  channel, probes for recovery, cautious readmission, priority order and
  per-user eligibility, and the quick "use another method" answer.
* :class:`TapSession` / :class:`TapBook` fail over inside one tap with
  idempotency keys, resolving every timeout (status inquiry or 0400 reversal)
  before another channel is tried, so nothing is authorised twice.
* :class:`HealthShare` is the port through which router instances pool
  health (the Redis adapter is :class:`tapshield.share.redis.RedisShare`);
  each keeps routing on its local view when the share is unreachable.
* :func:`replay` / :func:`compare` replay a scenario's taps through a policy
  (tapshield, the baselines, the oracle) against the simulator's ground truth.
"""

from tapshield.route.config import DEFAULT_ORDER, ChannelProfile, RouterConfig, estimate_profiles
from tapshield.route.replay import (
    POLICIES,
    ReplayResult,
    World,
    compare,
    config_from_history,
    make_policy,
    replay,
    routed_events,
    saved,
    taps_from_events,
)
from tapshield.route.router import Chooser, Decision, HealthShare, Probe, Router
from tapshield.route.stats import failures_to_eliminate
from tapshield.route.tap import (
    Action,
    Attempt,
    AttemptState,
    TapBook,
    TapSession,
    TapStateError,
    TapStatus,
    idempotency_key,
)

__all__ = [
    "DEFAULT_ORDER",
    "POLICIES",
    "Action",
    "Attempt",
    "AttemptState",
    "ChannelProfile",
    "Chooser",
    "Decision",
    "HealthShare",
    "Probe",
    "ReplayResult",
    "Router",
    "RouterConfig",
    "TapBook",
    "TapSession",
    "TapStateError",
    "TapStatus",
    "World",
    "compare",
    "config_from_history",
    "estimate_profiles",
    "failures_to_eliminate",
    "idempotency_key",
    "make_policy",
    "replay",
    "routed_events",
    "saved",
    "taps_from_events",
]
