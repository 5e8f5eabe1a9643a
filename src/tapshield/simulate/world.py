"""The ground-truth payment world: what really happens to an attempt.

:class:`World` is the one place that decides an attempt's fate, and both the
traffic generator and failover routers use it, so a router replayed against a
scenario meets exactly the channels the simulated customers met. An attempt
goes through the real order of a credit tap:

1. **the path** (phone, card network or partner, our gateway): the channel's
   normal technical failures and timeouts, then every active path fault
   (``interface``, ``network``, ``release``, announced ``maintenance``);
2. **the lender's risk engine**: fraud is blocked (``59``,
   ``risk_decision=decline``), plus the normal background of risk declines and
   any misfiring rule (``risk_control``);
3. **credit and issuer rules**: business declines (``51`` grows with the
   amount, ``05``, ``61``, ...) and one small merchant's declines (a decoy);
4. otherwise **approved** (a small share after extra review).

A fault only claims an attempt that would otherwise have got through its
stage, so ``fault_id`` marks exactly the attempts the fault changed (the
counterfactual: without the fault this attempt would not have failed there).

A timeout is *authorised* in ``timeout_authorised_share`` of cases: the lender
approved but the answer was lost on the way back. That is what makes a blind
retry charge a customer twice, and why ``authorised`` is in the output.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from tapshield.events.codes import RISK_CODES
from tapshield.events.schema import OUTCOME_DTYPE, OUTCOMES, RISK_DECISIONS, RISK_DTYPE
from tapshield.simulate.clock import FestivalWindow, festival_of
from tapshield.simulate.faults import Arrays, CompiledFault, compile_faults
from tapshield.simulate.model import Scenario, TrafficModel, traffic_of
from tapshield.simulate.population import (
    Population,
    Vocab,
    build_population,
    build_vocab,
    hash_uniform,
)
from tapshield.timeutil import TS_DTYPE

APPROVED, DECLINED, FAILED, TIMEOUT = 0, 1, 2, 3
R_APPROVE, R_REVIEW, R_DECLINE = 0, 1, 2
CARD_TESTING = 3
"""Fraud pattern codes: 0 none, 1 account_takeover, 2 device_farm, 3 card_testing."""
FRAUD_CODES: dict[str, int] = {"account_takeover": 1, "device_farm": 2, "card_testing": 3}
ATTEMPT_COLUMNS: tuple[str, ...] = (
    "ts", "channel", "region", "carrier", "os", "app_version", "device_model",
    "server_version", "user_id", "device_id", "merchant_id", "amount_fen", "payment_id",
)


def _cum_rows(p: np.ndarray) -> np.ndarray:
    c = np.cumsum(p, axis=1)
    return c


def _pick(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Row-wise inverse CDF: index of the first cumulative weight above ``u``."""
    return np.asarray((u[:, None] < cum).argmax(axis=1))


class World:
    """Customers, merchants, channels and faults of one seeded scenario."""

    def __init__(self, scenario: Scenario, traffic: TrafficModel, seed: int) -> None:
        self.scenario = scenario
        self.traffic = traffic
        self.seed = int(seed)
        self.vocab: Vocab = build_vocab(traffic, scenario)
        self.pop: Population = build_population(traffic, self.vocab, self.seed)
        self.faults: list[CompiledFault] = compile_faults(scenario, traffic, self.vocab, self.pop)
        self.festival: FestivalWindow | None = festival_of(scenario, traffic)
        v = self.vocab
        chans = list(traffic.channels.values())
        n_codes = len(v.codes)
        self.fail_p = np.asarray([c.technical_failure for c in chans])
        self.timeout_p = np.asarray([c.timeout for c in chans])
        fp = np.zeros((len(chans), n_codes))
        for i, c in enumerate(chans):
            total = sum(c.failure_codes.values())
            for code, w in c.failure_codes.items():
                fp[i, v.code(code)] = w / total
        self.fail_cum = _cum_rows(fp)
        self.risk_p = np.asarray([sum(p for code, p in c.declines.items() if code in RISK_CODES)
                                  for c in chans])
        biz = sorted({code for c in chans for code in c.declines if code not in RISK_CODES})
        self.biz_codes = np.asarray([v.code(c) for c in biz], dtype=np.int16)
        self.biz_p = np.asarray([[c.declines.get(code, 0.0) for code in biz] for c in chans])
        self.col_51 = biz.index("51") if "51" in biz else -1
        self.lat_median = np.asarray([c.latency.median_ms for c in chans])
        self.lat_sigma = np.asarray([c.latency.sigma for c in chans])
        self.tail_share = np.asarray([c.latency.tail_share for c in chans])
        self.tail_alpha = np.asarray([c.latency.tail_alpha for c in chans])
        self.timeout_ms = traffic.client_timeout_ms
        self.c00, self.c68, self.c59 = v.code("00"), v.code("68"), v.code("59")
        ct = [v.code(c) for c in ("14", "51", "05")]
        self.card_test_codes = np.asarray(ct, dtype=np.int16)

    @classmethod
    def from_scenario(cls, scenario: Scenario, *, seed: int | None = None) -> World:
        """The world a scenario runs in (``seed`` defaults to the scenario's)."""
        return cls(scenario, traffic_of(scenario), scenario.seed if seed is None else seed)

    # -- the core: vectorised fate of attempts ---------------------------------------

    def sample(self, a: Arrays, rng: np.random.Generator) -> Arrays:
        """Outcome, code, latency, risk decision, authorisation and fault per attempt.

        ``a`` holds code arrays (``ts`` in epoch microseconds, ``ch``, ``region``,
        ``carrier``, ``os``, ``model``, ``app``, ``srv``, ``merchant``,
        ``category``, ``amount``, ``fraud``, ``attack``).
        """
        ts, ch = a["ts"], a["ch"]
        n = ts.size
        code = np.full(n, -1, dtype=np.int16)
        fault = np.full(n, -1, dtype=np.int16)
        # 1. the path
        u = rng.random(n)
        pf = self.fail_p[ch]
        failed = u < pf
        tout = ~failed & (u < pf + self.timeout_p[ch])
        fi = np.flatnonzero(failed)
        if fi.size:
            code[fi] = _pick(self.fail_cum[ch[fi]], rng.random(fi.size))
        code[tout] = self.c68
        for f in self.faults:
            if f.stage != "technical":
                continue
            free = ~(failed | tout)
            idx = np.flatnonzero(f.mask(a, self.vocab) & free & f.active(ts))
            if idx.size == 0:
                continue
            p = f.intensity(ts[idx]) * (f.share if f.kind == "interface" else 1.0)
            h = idx[rng.random(idx.size) < p]
            if h.size == 0:
                continue
            is_to = rng.random(h.size) < f.timeout_share
            tout[h[is_to]] = True
            code[h[is_to]] = self.c68
            hf = h[~is_to]
            failed[hf] = True
            code[hf] = f.codes[_pick(np.cumsum(f.code_p)[None, :].repeat(hf.size, 0),
                                     rng.random(hf.size))]
            fault[h] = f.index
        # latency: log-normal body, Pareto tail, slowed by degraded networks and festivals
        lat = self.lat_median[ch] * np.exp(self.lat_sigma[ch] * rng.standard_normal(n))
        tail = np.flatnonzero(rng.random(n) < self.tail_share[ch])
        if tail.size:
            lat[tail] *= 1.0 + rng.pareto(self.tail_alpha[ch[tail]])
        for f in self.faults:
            if f.kind == "network":
                idx = np.flatnonzero(f.mask(a, self.vocab) & f.active(ts))
                if idx.size:
                    shape = f.intensity(ts[idx]) / max(f.peak, 1e-12)
                    lat[idx] *= 1.0 + (f.latency_factor - 1.0) * shape
        if self.festival is not None:
            lat *= 1.0 + (self.festival.latency_factor - 1.0) * self.festival.shape(ts)
        lat[failed] *= rng.uniform(0.3, 1.2, int(failed.sum()))
        np.minimum(lat, 0.97 * self.timeout_ms, out=lat)
        n_to = int(tout.sum())
        lat[tout] = self.timeout_ms * (1.0 + 0.02 * rng.random(n_to))
        ok = ~(failed | tout)
        # 2. the lender's risk engine
        rdec = np.zeros(n, dtype=bool)
        fraud, attack = a["fraud"], a["attack"]
        fr = np.flatnonzero((fraud > 0) & ok)
        if fr.size:
            block = np.full(fr.size, self.traffic.fraud.block_rate)
            att = attack[fr]
            for f in self.faults:
                if f.kind == "fraud_attack":
                    block[att == f.index] = f.peak
            hit = fr[rng.random(fr.size) < block]
            rdec[hit] = True
            fault[hit] = np.where(attack[hit] >= 0, attack[hit], -1)
        rr = np.flatnonzero(ok & ~rdec)
        rdec[rr[rng.random(rr.size) < self.risk_p[ch[rr]]]] = True
        for f in self.faults:
            if f.kind != "risk_control":
                continue
            idx = np.flatnonzero(f.mask(a, self.vocab) & ok & ~rdec & f.active(ts))
            if idx.size:
                h = idx[rng.random(idx.size) < f.intensity(ts[idx])]
                rdec[h] = True
                fault[h] = f.index
        code[rdec] = self.c59
        # 3. credit and issuer rules
        bdec = np.zeros(n, dtype=bool)
        bz = np.flatnonzero(ok & ~rdec)
        if bz.size and self.biz_codes.size:
            probs = self.biz_p[ch[bz]].copy()
            if self.col_51 >= 0:
                ref = self.traffic.risk.reference_amount_yuan * 100.0
                scale = (np.maximum(a["amount"][bz], 1) / ref) ** (
                    self.traffic.risk.insufficient_credit_elasticity)
                probs[:, self.col_51] *= np.clip(scale, 0.2, 5.0)
            cum = np.cumsum(probs, axis=1)
            ub = rng.random(bz.size)
            hit = ub < np.minimum(cum[:, -1], 0.9)
            j = _pick(cum[hit], ub[hit])
            bdec[bz[hit]] = True
            code[bz[hit]] = self.biz_codes[j]
        ct = np.flatnonzero((fraud == CARD_TESTING) & ok & ~rdec & ~bdec)
        if ct.size:
            h = ct[rng.random(ct.size) < 0.6]
            bdec[h] = True
            code[h] = self.card_test_codes[rng.integers(0, 3, h.size)]
        for f in self.faults:
            if f.kind != "small_merchant":
                continue
            idx = np.flatnonzero(f.mask(a, self.vocab) & ok & ~rdec & ~bdec & f.active(ts))
            if idx.size:
                h = idx[rng.random(idx.size) < f.intensity(ts[idx])]
                bdec[h] = True
                fault[h] = f.index
                code[h] = f.codes[_pick(np.cumsum(f.code_p)[None, :].repeat(h.size, 0),
                                        rng.random(h.size))]
        # 4. approved
        approved = ok & ~rdec & ~bdec
        code[approved] = self.c00
        outcome = np.full(n, APPROVED, dtype=np.int8)
        outcome[rdec | bdec] = DECLINED
        outcome[failed] = FAILED
        outcome[tout] = TIMEOUT
        risk = np.full(n, -1, dtype=np.int8)
        risk[ok] = R_APPROVE
        risk[rdec] = R_DECLINE
        ai = np.flatnonzero(approved)
        risk[ai[rng.random(ai.size) < self.traffic.risk.review_share]] = R_REVIEW
        authorised = approved.copy()
        ti = np.flatnonzero(tout)
        authorised[ti[rng.random(ti.size) < self.traffic.timeout_authorised_share]] = True
        return {"outcome": outcome, "code": code, "latency": lat, "risk": risk,
                "authorised": authorised, "fault": fault}

    def technical_p(self, a: Arrays) -> np.ndarray:
        """Exact probability that each attempt ends ``failed`` or ``timeout``."""
        ts, ch = a["ts"], a["ch"]
        survive = 1.0 - self.fail_p[ch] - self.timeout_p[ch]
        for f in self.faults:
            if f.stage != "technical":
                continue
            m = f.mask(a, self.vocab) & f.active(ts)
            p = np.zeros(ts.size)
            p[m] = f.intensity(ts[m]) * (f.share if f.kind == "interface" else 1.0)
            survive = survive * (1.0 - p)
        return np.asarray(1.0 - survive)

    # -- the public, frame-level API -------------------------------------------------

    def _arrays(self, attempts: pl.DataFrame) -> Arrays:
        missing = [c for c in ("ts", "channel") if c not in attempts.columns]
        if missing:
            raise ValueError(f"attempts need the column(s) {', '.join(missing)}")
        v = self.vocab

        def codes(col: str, values: list[str]) -> np.ndarray:
            if col not in attempts.columns:
                return np.full(attempts.height, -1, dtype=np.int16)
            s = attempts[col].cast(pl.String).cast(pl.Enum(values), strict=False)
            return s.to_physical().cast(pl.Int16).fill_null(-1).to_numpy()

        ts = attempts["ts"]
        if ts.dtype != TS_DTYPE:
            ts = ts.cast(TS_DTYPE)
        ch = codes("channel", v.channels)
        if (ch < 0).any():
            bad = attempts.filter(pl.Series(ch < 0))["channel"].unique().to_list()
            raise ValueError(f"channel(s) {bad} are not in the traffic model "
                             f"({', '.join(v.channels)})")
        if "merchant_id" in attempts.columns:
            merchant = (attempts["merchant_id"].str.strip_prefix("m")
                        .cast(pl.Int64, strict=False).fill_null(-1).to_numpy())
        else:
            merchant = np.full(attempts.height, -1, dtype=np.int64)
        known = (merchant >= 0) & (merchant < self.pop.n_merchants)
        category = np.where(known, self.pop.merchant_category[np.where(known, merchant, 0)], -1)
        if "merchant_category" in attempts.columns:
            given = codes("merchant_category", v.categories)
            category = np.where(given >= 0, given, category)
        amount = (attempts["amount_fen"].fill_null(0).to_numpy() if "amount_fen"
                  in attempts.columns else np.full(attempts.height, 10_000))
        fraud = np.zeros(attempts.height, dtype=np.int8)
        if "fraud" in attempts.columns:
            fraud = (attempts["fraud"].cast(pl.String)
                     .replace_strict(FRAUD_CODES, default=0, return_dtype=pl.Int8)
                     .to_numpy())
        return {
            "ts": ts.dt.epoch("us").to_numpy(),
            "ch": ch,
            "region": codes("region", v.regions),
            "carrier": codes("carrier", v.carriers),
            "os": codes("os", v.os),
            "model": codes("device_model", v.models),
            "app": codes("app_version", v.app_versions),
            "srv": codes("server_version", v.server_versions),
            "merchant": merchant.astype(np.int64),
            "category": category.astype(np.int16),
            "amount": np.asarray(amount, dtype=np.int64),
            "fraud": fraud,
            "attack": np.full(attempts.height, -1, dtype=np.int16),
        }

    def attempt(self, attempts: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
        """Try the attempts in this world; returns them with what really happened.

        Adds (or replaces) ``outcome``, ``response_code``, ``latency_ms`` and
        ``risk_decision`` sampled exactly as the simulator samples them, plus
        ``authorised`` (did the lender really approve? true for every approval
        and for the share of timeouts whose answer was lost) and ``fault_id``
        (the fault that made this attempt fail, null if none).
        """
        a = self._arrays(attempts)
        r = self.sample(a, rng)
        return attempts.with_columns(self.result_columns(r))

    def result_columns(self, r: Arrays) -> list[pl.Series]:
        v = self.vocab
        risk_idx = pl.Series(r["risk"].astype(np.int32)).replace(-1, None)
        fault_idx = pl.Series(r["fault"].astype(np.int32)).replace(-1, None)
        ids = pl.Series([f.id for f in self.faults], dtype=pl.String)
        return [
            pl.Series(OUTCOMES).gather(r["outcome"]).cast(OUTCOME_DTYPE).alias("outcome"),
            v.strings("response_code").gather(r["code"]).alias("response_code"),
            pl.Series("latency_ms", np.round(r["latency"], 1)),
            pl.Series(RISK_DECISIONS).gather(risk_idx).cast(RISK_DTYPE).alias("risk_decision"),
            pl.Series("authorised", r["authorised"]),
            ids.gather(fault_idx).alias("fault_id") if ids.len() else
            pl.Series("fault_id", [None] * r["fault"].size, dtype=pl.String),
        ]

    def technical_failure_probability(self, attempts: pl.DataFrame) -> pl.Series:
        """P(outcome is ``failed`` or ``timeout``) for each attempt, exactly (an oracle)."""
        return pl.Series("technical_failure_probability", self.technical_p(self._arrays(attempts)))

    def eligible(self, user_ids: Sequence[str] | pl.Series) -> pl.DataFrame:
        """``(user_id, channel)`` for every payment method each customer really has.

        Customers are ``u<n>``; ids of another shape get a stable hash-based
        draw (stable for a Polars version).
        """
        s = pl.Series("user_id", list(user_ids) if not isinstance(user_ids, pl.Series)
                      else user_ids, dtype=pl.String)
        num = s.str.strip_prefix("u").cast(pl.Int64, strict=False)
        idx = num.fill_null((s.hash(seed=self.seed) % (1 << 62)).cast(pl.Int64))
        elig = self.pop.eligible_matrix(idx.to_numpy())
        rows, cols = np.nonzero(elig)
        return pl.DataFrame({
            "user_id": s.gather(rows),
            "channel": pl.Series(self.vocab.channels, dtype=pl.String).gather(cols),
        })

    def upgraded(self, users: np.ndarray) -> np.ndarray:
        """Per-customer uniform deciding when an app rollout reaches them."""
        return hash_uniform(users, self.seed, 7)
