"""Customer notices: templates per cause and language, the sending policy, personal-data checks.

A customer whose tap failed in an incident's scope is told once what happened
and what to do (the *notice*), and once that it is over (the *follow-up*).
The policy a customer-service head expects:

* **one notice and one follow-up per customer per case**: the idempotency key
  is ``(case, customer, kind)``; a *case* joins incidents of one cause whose
  scopes and times overlap (a wave split in two by the monitor is one event
  to the customer);
* **a daily cap** per customer (default 4 messages per local day): a customer
  hit by many incidents in one day stops hearing from us rather than being
  flooded; capped messages are recorded, not sent;
* **quiet hours** (22:00-08:00 in the customer's time zone): a notice due then
  waits until the morning, except a fraud warning, which cannot wait;
* **personal data**: a template sees only the recipient's own masked account
  (``尾号1234``), the time and amount of their own failed payment, and public
  names; :func:`personal_data_in` checks every rendered message again for
  full phone numbers, e-mail addresses, card numbers (Luhn) and customer ids
  before anything is queued.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from tapshield.errors import ContractError
from tapshield.money import format_fen
from tapshield.timeutil import zone

LANGUAGES = ("zh-CN", "en")
KINDS = ("notice", "followup")

REGION_NAMES: dict[str, tuple[str, str]] = {
    "CN-AH": ("安徽", "Anhui"), "CN-BJ": ("北京", "Beijing"), "CN-CQ": ("重庆", "Chongqing"),
    "CN-FJ": ("福建", "Fujian"), "CN-GD": ("广东", "Guangdong"), "CN-GS": ("甘肃", "Gansu"),
    "CN-GX": ("广西", "Guangxi"), "CN-GZ": ("贵州", "Guizhou"), "CN-HA": ("河南", "Henan"),
    "CN-HB": ("湖北", "Hubei"), "CN-HE": ("河北", "Hebei"), "CN-HI": ("海南", "Hainan"),
    "CN-HL": ("黑龙江", "Heilongjiang"), "CN-HN": ("湖南", "Hunan"), "CN-JL": ("吉林", "Jilin"),
    "CN-JS": ("江苏", "Jiangsu"), "CN-JX": ("江西", "Jiangxi"), "CN-LN": ("辽宁", "Liaoning"),
    "CN-NM": ("内蒙古", "Inner Mongolia"), "CN-NX": ("宁夏", "Ningxia"),
    "CN-QH": ("青海", "Qinghai"), "CN-SC": ("四川", "Sichuan"), "CN-SD": ("山东", "Shandong"),
    "CN-SH": ("上海", "Shanghai"), "CN-SN": ("陕西", "Shaanxi"), "CN-SX": ("山西", "Shanxi"),
    "CN-TJ": ("天津", "Tianjin"), "CN-XJ": ("新疆", "Xinjiang"), "CN-XZ": ("西藏", "Tibet"),
    "CN-YN": ("云南", "Yunnan"), "CN-ZJ": ("浙江", "Zhejiang"),
}
CHANNEL_NAMES: dict[str, tuple[str, str]] = {
    "nfc": ("NFC碰一碰", "NFC tap"), "qr": ("扫码", "QR code"),
    "debit_card": ("借记卡", "debit card"), "wallet": ("钱包", "wallet"),
}


def region_name(code: str | None, language: str) -> str:
    if not code:
        return "全国" if language == "zh-CN" else "all regions"
    zh, en = REGION_NAMES.get(code, (code, code))
    return zh if language == "zh-CN" else en


def channel_name(code: str | None, language: str) -> str:
    if not code:
        return "" if language == "zh-CN" else "card"
    zh, en = CHANNEL_NAMES.get(code, (code, code))
    return zh if language == "zh-CN" else en


def scope_names(scope: list[dict[str, str]], dim: str, language: str) -> str:
    """The public names of a dimension's values in a scope (``广东、广西``)."""
    values = sorted({c[dim] for c in scope if dim in c})
    name = region_name if dim == "region" else channel_name
    if not values:
        return name(None, language)
    sep = "、" if language == "zh-CN" else ", "
    return sep.join(name(v, language) for v in values)


@dataclass(frozen=True, slots=True)
class Templates:
    version: str
    status_url: str
    texts: dict[str, dict[str, dict[str, str]]]
    """cause -> kind -> language -> template."""
    public: dict[str, dict[str, str]]

    def text(self, cause: str, kind: str, language: str) -> str:
        by_kind = self.texts.get(cause) or self.texts["unknown"]
        return by_kind[kind][language if language in LANGUAGES else "zh-CN"]


@cache
def _default_templates() -> Templates:
    text = resources.files("tapshield.respond").joinpath("templates.yaml").read_text("utf-8")
    return parse_templates(text, "templates.yaml")


def load_templates(path: Path | str | None = None) -> Templates:
    """The packaged templates, or a company's own copy (validated)."""
    if path is None:
        return _default_templates()
    p = Path(path)
    return parse_templates(p.read_text(encoding="utf-8"), p.name)


_FIELDS = {"when", "amount", "account", "channel", "region", "ref", "status_url"}


def parse_templates(text: str, name: str) -> Templates:
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ContractError(f"{name}: not valid YAML ({exc})") from None
    if not isinstance(d, dict) or not isinstance(d.get("templates"), dict):
        raise ContractError(f"{name}: needs a 'templates' mapping")
    texts: dict[str, dict[str, dict[str, str]]] = {}
    for cause, kinds in d["templates"].items():
        texts[str(cause)] = {}
        for kind in KINDS:
            langs = (kinds or {}).get(kind) or {}
            for lang in LANGUAGES:
                t = langs.get(lang)
                if not isinstance(t, str) or not t.strip():
                    raise ContractError(f"{name}: templates.{cause}.{kind}.{lang} is missing")
                unknown = set(re.findall(r"{(\w+)}", t)) - _FIELDS
                if unknown:
                    raise ContractError(f"{name}: templates.{cause}.{kind}.{lang} uses "
                                        f"{', '.join(sorted(unknown))}: only "
                                        f"{', '.join(sorted(_FIELDS))} exist")
            texts[str(cause)][kind] = {lang: str(langs[lang]) for lang in LANGUAGES}
    if "unknown" not in texts:
        raise ContractError(f"{name}: templates.unknown (the fallback) is missing")
    public = {str(k): {lang: str(v[lang]) for lang in LANGUAGES}
              for k, v in (d.get("public") or {}).items()}
    return Templates(version=str(d.get("version", "unversioned")),
                     status_url=str(d.get("status_url", "")), texts=texts, public=public)


# -- the policy ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoticePolicy:
    """When customers hear from us. Defaults with their reasons in the module docstring."""

    quiet_start: time = time(22, 0)
    quiet_end: time = time(8, 0)
    daily_cap: int = 4
    urgent_causes: tuple[str, ...] = ("fraud_attack",)
    """Causes whose notices go out in quiet hours (a scam warning cannot wait)."""
    followup_gap: timedelta = timedelta(seconds=1)
    """A follow-up is never due before its notice (both deferred to one morning)."""

    def in_quiet_hours(self, at: datetime, tz: str) -> bool:
        t = at.astimezone(zone(tz)).time()
        if self.quiet_start <= self.quiet_end:
            return self.quiet_start <= t < self.quiet_end
        return t >= self.quiet_start or t < self.quiet_end

    def release_at(self, at: datetime, tz: str, cause: str) -> datetime:
        """When a message wanted at ``at`` may go out."""
        if cause in self.urgent_causes or not self.in_quiet_hours(at, tz):
            return at
        local = at.astimezone(zone(tz))
        morning = local.replace(hour=self.quiet_end.hour, minute=self.quiet_end.minute,
                                second=0, microsecond=0)
        if morning <= local:
            morning += timedelta(days=1)
        return morning


@dataclass(frozen=True, slots=True)
class Recipient:
    """A customer as the notice planner sees them: tokens and preferences, no raw contact."""

    user_id: str
    contact_token: str
    """The vault token of the phone number or e-mail address the notice goes to."""
    channel: str
    """``sms``, ``email`` or ``push``."""
    language: str = "zh-CN"
    tz: str = "Asia/Shanghai"
    account_last4: str = "0000"


@dataclass(frozen=True, slots=True)
class FailedTap:
    """The customer's own failed payment the notice is about."""

    at: datetime
    amount_fen: int
    channel: str | None = None
    region: str | None = None


def render(templates: Templates, cause: str, kind: str, recipient: Recipient, *,
           tap: FailedTap | None, scope: list[dict[str, str]], ref: str) -> str:
    lang = recipient.language if recipient.language in LANGUAGES else "zh-CN"
    region = (region_name(tap.region, lang) if tap is not None and tap.region
              else scope_names(scope, "region", lang))
    channel = (channel_name(tap.channel, lang) if tap is not None and tap.channel
               else scope_names(scope, "channel", lang))
    when = (tap.at.astimezone(zone(recipient.tz)).strftime("%m-%d %H:%M")
            if tap is not None else "")
    return templates.text(cause, kind, lang).format(
        when=when, amount=format_fen(tap.amount_fen) if tap is not None else "",
        account=recipient.account_last4, channel=channel, region=region, ref=ref,
        status_url=templates.status_url)


def message_key(*parts: str) -> str:
    """A stable idempotency key: the same message planned twice has the same key.

    Upper-case base32 (26 characters, 130 bits): no lower-case letter, so no key can
    look like a customer or device id (``u123456``, ``d95145``) to a search of the
    outputs for raw identifiers, as hex keys do by chance."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return base64.b32encode(digest).decode("ascii")[:26]


# -- personal data ----------------------------------------------------------------

_PHONE = re.compile(r"(?<!\d)(?:\+?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DIGITS = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


@dataclass(slots=True)
class PersonalDataFinding:
    kind: str
    text: str


def personal_data_in(text: str, *, known: frozenset[str] = frozenset()
                     ) -> list[PersonalDataFinding]:
    """Full identifiers in a message: phone numbers, e-mail addresses, card numbers
    (13-19 digits passing Luhn) and any of ``known`` (customer ids, contacts)."""
    found: list[PersonalDataFinding] = []
    found += [PersonalDataFinding("phone", m.group()) for m in _PHONE.finditer(text)]
    found += [PersonalDataFinding("email", m.group()) for m in _EMAIL.finditer(text)]
    for m in _DIGITS.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if _luhn(digits):
            found.append(PersonalDataFinding("card_number", m.group()))
    if known:
        for token in re.findall(r"[\w@.+-]+", text):
            if token in known:
                found.append(PersonalDataFinding("identifier", token))
    return found
