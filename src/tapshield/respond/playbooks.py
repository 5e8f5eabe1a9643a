"""Playbooks per cause (YAML, versioned): the steps of an incident's open, escalate and resolve.

A step is either an ``action`` the system performs (fail over, notify the
partner, tell customers, roll back the risk change ...) whose outcome is
recorded when it runs, or a ``check`` a person ticks in the service (the
outcome is who ticked it and when). ``min_level`` keeps loud steps (telling
customers, partners, regulators) for incidents that page: a blue level-4
notice does not text anybody.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from tapshield.errors import ContractError

PHASES = ("open", "escalate", "acknowledge", "mitigate", "resolve")
"""``open``, ``escalate`` and ``resolve`` follow the monitor (or a person resolving, or
reopening); ``acknowledge`` and ``mitigate`` run when the lifecycle enters that state,
by a person through the service or by the playbook's own first mitigation."""
PHASE_OF_STATE = {"open": "open", "acknowledged": "acknowledge", "mitigating": "mitigate",
                  "resolved": "resolve"}
"""The phase a move into a lifecycle state runs (a move to ``postmortem`` runs none)."""
ACTIONS = ("failover", "notify_partners", "notify_customers", "followup_customers",
           "status_page", "rollback_risk_change", "lift_restrictions", "tighten_rules",
           "block_devices", "halt_rollout", "rollback_release", "regulatory_drafts",
           "postmortem_draft")


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    """``<cause>.<phase>.<n>``: stable within a playbook version."""
    kind: str
    """``action`` or ``check``."""
    name: str
    """The action's name, or the check's text."""
    says: str
    min_level: int = 4

    def applies(self, level: int) -> bool:
        return 1 <= level <= self.min_level


@dataclass(frozen=True, slots=True)
class Playbooks:
    version: str
    steps: dict[str, dict[str, tuple[Step, ...]]]

    def for_phase(self, cause: str, phase: str, level: int) -> list[Step]:
        book = self.steps.get(cause) or self.steps["unknown"]
        return [s for s in book.get(phase, ()) if s.applies(level)]


@cache
def _default() -> Playbooks:
    text = resources.files("tapshield.respond").joinpath("playbooks.yaml").read_text("utf-8")
    return parse_playbooks(text, "playbooks.yaml")


def load_playbooks(path: Path | str | None = None) -> Playbooks:
    if path is None:
        return _default()
    p = Path(path)
    return parse_playbooks(p.read_text(encoding="utf-8"), p.name)


def parse_playbooks(text: str, name: str) -> Playbooks:
    """Validate a playbooks file; errors name the cause, phase and step."""
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ContractError(f"{name}: not valid YAML ({exc})") from None
    if not isinstance(d, dict) or not isinstance(d.get("playbooks"), dict):
        raise ContractError(f"{name}: needs a 'playbooks' mapping")
    if not d.get("version"):
        raise ContractError(f"{name}: needs a 'version' (it is recorded with every step run)")
    out: dict[str, dict[str, tuple[Step, ...]]] = {}
    for cause, phases in d["playbooks"].items():
        out[str(cause)] = {}
        for phase, steps in (phases or {}).items():
            if phase not in PHASES:
                raise ContractError(f"{name}: {cause}.{phase}: phases are {', '.join(PHASES)}")
            parsed: list[Step] = []
            for n, s in enumerate(steps or [], start=1):
                where = f"{name}: {cause}.{phase} step {n}"
                if not isinstance(s, dict) or ("action" in s) == ("check" in s):
                    raise ContractError(f"{where}: give exactly one of 'action' or 'check'")
                level = s.get("min_level", 4)
                if not isinstance(level, int) or not 1 <= level <= 4:
                    raise ContractError(f"{where}: min_level is 1..4")
                if "action" in s:
                    if s["action"] not in ACTIONS:
                        raise ContractError(f"{where}: unknown action {s['action']!r} "
                                            f"(one of {', '.join(ACTIONS)})")
                    parsed.append(Step(f"{cause}.{phase}.{n}", "action", str(s["action"]),
                                       str(s.get("says", s["action"])), level))
                else:
                    parsed.append(Step(f"{cause}.{phase}.{n}", "check", str(s["check"]),
                                       str(s["check"]), level))
            out[str(cause)][str(phase)] = tuple(parsed)
    if "unknown" not in out:
        raise ContractError(f"{name}: the 'unknown' playbook (the fallback) is missing")
    return Playbooks(str(d["version"]), out)
