"""The API's request and answer bodies (published in ``/openapi.json``).

Request fields follow the event contract (docs/contracts.md) and its rules:
ids at most 128 bytes, ``region`` ISO 3166-2, ``amount`` decimal yuan with at
most two decimals (a string, exact; or a JSON number exact to the fen),
``response_code`` two characters, an ``approved`` outcome only with an
approval code. A request breaking one gets 422 naming the field.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from tapshield.events.codes import APPROVAL_CODES
from tapshield.money import MoneyError, parse_yuan


def _bytes_128(v: str) -> str:
    if len(v.encode("utf-8")) > 128:
        raise ValueError("at most 128 bytes (UTF-8)")
    return v


Id = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_bytes_128)]
Text = Annotated[str, Field(max_length=128), AfterValidator(_bytes_128)]
Channel = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
Region = Annotated[str, Field(pattern=r"^[A-Z]{2}-[A-Z0-9]{1,3}$",
                              description="ISO 3166-2 subdivision, e.g. CN-GD")]
Code = Annotated[str, Field(pattern=r"^[0-9A-Z]{2}$",
                            description="two-character ISO 8583 field-39 code")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- authorize -------------------------------------------------------------------


class AuthorizeRequest(_In):
    """One attempt of a tap, asked before it is sent to a channel."""

    payment_id: Id = Field(description="The customer's tap; every attempt of it shares it.")
    attempt_id: Id = Field(description="This attempt; a replay with the same id gets the "
                           "same answer.")
    user_id: Id
    device_id: Id
    merchant_id: Id
    amount: str | float = Field(
        description="Decimal yuan, at most 2 decimals: a string (exact) or a number exact "
        "to the fen", examples=["128.50"])
    region: Region
    channels: list[Channel] | None = Field(
        None, max_length=16,
        description="Channels this customer can use (default: every routed channel).")
    carrier: Text | None = None
    os: Text | None = None
    app_version: Text | None = None
    device_model: Text | None = None
    merchant_category: Text | None = None

    @field_validator("amount", mode="before")
    @classmethod
    def _amount(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("amount must be decimal yuan, not a boolean")
        return v

    @field_validator("amount")
    @classmethod
    def _exact(cls, v: str | float) -> str | float:
        text = v if isinstance(v, str) else repr(float(v))
        if not isinstance(v, str) and text.endswith(".0"):
            text = text[:-2]
        try:
            parse_yuan(text)
        except MoneyError:
            raise ValueError("decimal yuan >= 0 with at most 2 decimals, no exponent "
                             f"(got {v!r})") from None
        return v

    @property
    def amount_fen(self) -> int:
        v = self.amount
        text = v if isinstance(v, str) else repr(float(v))
        if not isinstance(v, str) and text.endswith(".0"):
            text = text[:-2]
        return parse_yuan(text)


class AuthorizeAnswer(_Out):
    """The decision and the route of one attempt."""

    payment_id: str
    attempt_id: str
    attempt: int = Field(description="1 for the tap's first attempt, 2 after one failover, ...")
    decision: Literal["approve", "step_up", "decline"] = Field(
        description="step_up: run strong verification first, then send the attempt")
    reasons: list[str] = Field(description="Why the decision (rule names and reasons)")
    decision_version: str = Field(description="Rule set or model that decided")
    channel: str | None = Field(description="Where to send the attempt; null: do not send it")
    channel_reason: str = Field(
        description="Why this channel, or why none: 'use another method: ...' is the "
        "immediate answer to show the customer instead of a timeout")
    idempotency_key: str | None = Field(
        description="Send with the attempt (stable per payment and attempt number)")
    deadline_ms: int | None = Field(
        description="Stop waiting for the channel's answer after this long and report "
        "a timeout")


# -- results ---------------------------------------------------------------------


class ResultRequest(_In):
    """How the attempt ended at the channel."""

    outcome: Literal["approved", "declined", "failed", "timeout"]
    response_code: Code | None = None
    latency_ms: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    step_up_passed: bool | None = Field(default=None, description=(
        "For an attempt answered `step_up`: whether the customer passed strong "
        "verification (default: an approved outcome counts as passed)"))

    @model_validator(mode="after")
    def _code_matches(self) -> ResultRequest:
        code = self.response_code
        if self.outcome == "approved" and code is not None and code not in APPROVAL_CODES:
            raise ValueError("response_code: an approved outcome needs an approval code "
                             f"({', '.join(sorted(APPROVAL_CODES))}) or none")
        if self.outcome != "approved" and code == "00":
            raise ValueError("response_code: 00 means approved; it cannot go with "
                             f"{self.outcome}")
        return self


class InquiryRequest(_In):
    """The status inquiry's answer for a timed-out attempt."""

    authorised: bool | None = Field(
        description="true: the issuer authorised it; false: it did not; null: no answer "
        "(send the 0400 reversal)")


class ResultAnswer(_Out):
    attempt_id: str
    payment_id: str
    channel: str
    state: Literal["in_flight", "approved", "declined", "failed", "ambiguous",
                   "not_authorised", "authorised", "reversed"]
    action: Literal["attempt", "inquire", "reverse", "done"] = Field(
        description="attempt: ask /v1/authorize for the next attempt; inquire: send a status "
        "inquiry and report it; reverse: send a 0400 reversal, then ask for the next attempt; "
        "done: the tap is over")
    reversal_required: bool
    tap_status: Literal["open", "approved", "declined", "failed"]
    tap_reason: str


# -- probes & health ---------------------------------------------------------------


class ProbeOut(_Out):
    channel: str
    region: str | None


class ProbesDue(_Out):
    probes: list[ProbeOut] = Field(description="Send each (0800 echo or zero-amount test) "
                                   "and report the results")


class ProbeResult(_In):
    channel: Channel
    region: Region | None = None
    ok: bool


class ProbeResults(_In):
    results: list[ProbeResult] = Field(min_length=1, max_length=1000)


class Accepted(_Out):
    accepted: int


class KeyHealthOut(_Out):
    channel: str
    region: str | None = Field(description="null: the channel in all regions")
    state: Literal["healthy", "trial", "eliminated"]
    success_probability: float
    eliminated_since: datetime | None
    cusum: float
    cusum_threshold: float


class ShareOut(_Out):
    configured: bool
    up: bool | None
    pending: int | None
    errors: int | None


class ChannelHealth(_Out):
    at: datetime
    keys: list[KeyHealthOut]
    share: ShareOut


# -- silences --------------------------------------------------------------------


class MatcherIn(_In):
    name: str = Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$")
    value: str = Field(max_length=1024)
    is_regex: bool = False
    is_equal: bool = True

    @model_validator(mode="after")
    def _regex(self) -> MatcherIn:
        if self.is_regex:
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"value: not a regular expression ({exc})") from None
        return self


def _aware(v: datetime) -> datetime:
    if v.tzinfo is None:
        raise ValueError("needs a time zone offset (RFC 3339)")
    return v.astimezone(UTC)


Instant = Annotated[datetime, AfterValidator(_aware)]


class SilenceIn(_In):
    matchers: list[MatcherIn] = Field(min_length=1, max_length=32)
    starts_at: Instant | None = Field(default=None, description="Default: now")
    ends_at: Instant
    comment: str = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _range(self) -> SilenceIn:
        start = self.starts_at or datetime.now(UTC)
        if self.ends_at <= start:
            raise ValueError("ends_at: must be after starts_at")
        if self.ends_at <= datetime.now(UTC):
            raise ValueError("ends_at: must be in the future")
        return self


class MatcherOut(_Out):
    name: str
    value: str
    is_regex: bool
    is_equal: bool


class SilenceOut(_Out):
    id: str
    matchers: list[MatcherOut]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime
    updated_at: datetime
    status: Literal["pending", "active", "expired"]


class SilenceList(_Out):
    items: list[SilenceOut]


# -- incidents & alerts ----------------------------------------------------------


class Handling(_Out):
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    assignee: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    notes: int


class ActionOut(_Out):
    action: Literal["acknowledge", "assign", "note", "resolve"]
    actor: str
    at: datetime
    assignee: str | None
    note: str | None


class IncidentView(_Out):
    incident: dict[str, Any] = Field(description="The incident as in incidents.json "
                                     "(docs/contracts.md)")
    run_id: str
    status: Literal["open", "closed"] = Field(description="open while the wave lasts")
    handling: Handling


class IncidentDetail(IncidentView):
    actions: list[ActionOut]


class IncidentList(_Out):
    total: int
    items: list[IncidentView]


class AlertList(_Out):
    total: int
    items: list[dict[str, Any]] = Field(description="Alert state changes as in alerts.jsonl")


class AcknowledgeIn(_In):
    note: str | None = Field(default=None, max_length=4000)


class AssignIn(_In):
    assignee: str = Field(min_length=1, max_length=128)
    note: str | None = Field(default=None, max_length=4000)


class NoteIn(_In):
    note: str = Field(min_length=1, max_length=4000)


class ResolveIn(_In):
    note: str | None = Field(default=None, max_length=4000)


# -- errors & probes of the service itself --------------------------------------


class Problem(_Out):
    """Every error but 422 (whose body names the invalid fields)."""

    status: int
    code: str
    detail: str
    request_id: str | None = None


class Health(_Out):
    status: Literal["ok"]


class Readiness(_Out):
    status: Literal["ready", "not_ready"]
    checks: dict[str, bool]


class RejectOut(_Out):
    row: int = Field(description="1-based position of the event in the batch")
    column: str = Field(description="the column that broke the rule (`*`: the whole record)")
    rule: str = Field(description="the rule (docs/contracts.md)")


class EventsAnswer(_Out):
    accepted: int = Field(description="events stored for the live monitor")
    rejected: int
    rejects: list[RejectOut] = Field(description="every rejected row with its reason "
                                     "(values are not echoed back)")


class MonitorStatus(_Out):
    enabled: bool
    leader: bool = Field(description="this worker runs the live monitor")
    restored: bool = Field(description="the monitor resumed from a checkpoint")
    position: int = Field(description="inbox rows the monitor has read")
    events: int
    open_alerts: int
    pages: int
    alert_changes: int


class RestrictionIn(_In):
    kind: Literal["user", "device"]
    id: Id
    action: Literal["step_up", "decline"] = "step_up"
    until: Instant = Field(description="when it expires (RFC 3339)")
    reason: str = Field(min_length=1, max_length=200)


class RestrictionOut(_Out):
    kind: str
    id: str
    action: str
    since: str
    until: str
    reason: str
    by: str


class RestrictionList(_Out):
    items: list[RestrictionOut]


class LabelIn(_In):
    event_id: Id = Field(description="the tap's payment_id (the engine's request id)")
    label: Literal[0, 1] = Field(description="1 fraud, 0 genuine")
    reported_at: Instant = Field(description="when the label became known")


class LabelsIn(_In):
    labels: list[LabelIn] = Field(max_length=10_000)
