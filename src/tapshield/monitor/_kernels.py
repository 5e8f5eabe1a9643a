"""Compiled inner loops of the monitor: per-event sequential tests over all slices.

Why a compiled loop rather than a Polars expression: a CUSUM is a recursion
(``W = max(0, W + llr)``) evaluated at every event of every slice an event
belongs to, and the exact event at which it crosses its threshold is the
detection time. Doing it per event, not per time bucket, is what lets the
detector come within a small factor of the optimal (oracle) detection delay;
doing it in one compiled pass over columnar arrays keeps it at millions of
events per second. Everything here is a pure function of the arrays passed
in: the same events in the same order give the same state, however the
stream was cut into batches, because state only changes at events and at
bucket boundaries (which are defined in event time).

Three tests run side by side (see :mod:`tapshield.monitor.detectors`):

* **rates** (technical failures, business declines, risk declines, slow
  payments) per slice: a bank of Bernoulli CUSUMs, one per design ratio
  ``rho_k`` (``p1 = rho_k * p0``), updated lazily: a success only lowers the
  statistic, so a run of ``m`` successes is applied in one step as
  ``max(0, W + m * a0)`` (exactly what ``m`` single steps give);
* **traffic share** per slice: a Bernoulli CUSUM over the *national* event
  stream testing whether the share of events falling in the slice dropped to
  ``rho * share`` (a dead channel shows as silence, not as errors). Events
  outside the slice raise it, so it is scanned once per tick;
* **national traffic**: a Poisson-process CUSUM in continuous time for the
  national event rate dropping to ``rho * lambda``.

While a test is firing, a reverse test (``V``) accumulates evidence that the
slice is back to normal; it is what resolves an alert (a separate threshold
from the one that fired it).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

# Event classes (int8): what an attempt's outcome means for reliability.
APPROVED = 0
FAILED = 1
TIMEOUT = 2
DECLINE = 3
"""A business decline other than risk (credit, issuer, merchant)."""
RISK = 4

# Rate signals (axis 1 of the rate arrays).
SIG_TECHNICAL = 0
SIG_DECLINE = 1
SIG_RISK = 2
SIG_LATENCY = 3
N_RATE = 4
SIG_TRAFFIC = 4
SIG_NATIONAL_TRAFFIC = 5

# Per-bucket accumulators (axis 1 of ``acc``).
F_ATTEMPTS = 0
F_APPROVED = 1
F_TECHNICAL = 2
F_DECLINE = 3
F_RISK = 4
F_SLOW = 5
F_TECH_FEN = 6
F_FEN = 7
F_DECLINE_COUNTED = 8
F_RISK_COUNTED = 9
F_TIMEOUT = 10
N_FIELDS = 11

# National state: float slots.
NF_W = 0
NF_RATE = 1  # lambda0 * (1 - rho) per microsecond: the drift while silent
NF_LOG_RHO = 2
NF_THR = 3
NF_V = 4
NF_V_RATE = 5  # (lambda0 - lambda_f) per microsecond: V's drift while silent
NF_V_JUMP = 6  # ln(lambda0 / lambda_f): V's jump at each event
NF_ARMED = 7
N_NF = 8
# National state: integer slots.
NI_LAST_TS = 0
NI_CP = 1
NI_LAST_TICK = 2
NI_N = 3
NI_REC = 4
NI_VRESET = 5
NI_REC_DONE = 6
NI_NX = 7
NI_STARTED = 8
N_NI = 9

INF = np.inf

# Crossing records: [slice, signal, bank, local event index, ts, change point].
X_SLICE = 0
X_SIGNAL = 1
X_BANK = 2
X_INDEX = 3
X_TS = 4
X_CP = 5
N_X = 6

# -- the slice tests' state, stacked by dtype and shape (as ``nf``/``ni`` stack the
# national test's): ``detectors.DetectorBank`` keeps one array per stack and a named
# view per row; the kernels take the stacks and unpack the rows below.
RATE_F = ("rthr", "rv", "rb0", "rb1", "xe", "ne", "season", "fx", "fn", "p_mean", "p_hi",
          "p_llr")
"""Rate tests, float64 ``[stack, slices, signals]``."""
RF_THR, RF_V, RF_B0, RF_B1, RF_XE, RF_NE, RF_SEASON, RF_FX, RF_FN, RF_PMEAN, RF_PHI, \
    RF_PLLR = range(12)
RATE_I = ("rlast", "rvreset")
"""Rate tests, int64 ``[stack, slices, signals]``."""
RI_LAST, RI_VRESET = range(2)
RATE_B = ("rrec", "rdone", "rstate")
"""Rate tests, int8 ``[stack, slices, signals]``."""
RB_REC, RB_DONE, RB_STATE = range(3)
RATE_W = ("rw", "ra0", "ra1")
"""Rate tests' CUSUM banks, float64 ``[stack, slices, signals, designs]``."""
RW_W, RW_A0, RW_A1 = range(3)
SLICE_F = ("tw", "ta0", "ta1", "tthr", "tv", "tb0", "tb1", "te_x", "te_n", "tfx", "tfn", "share",
           "lat_thr")
"""Traffic-share tests and latency thresholds, float64 ``[stack, slices]``."""
TF_W, TF_A0, TF_A1, TF_THR, TF_V, TF_B0, TF_B1, TF_EX, TF_EN, TF_FX, TF_FN, TF_SHARE, \
    TF_LATTHR = range(13)
SLICE_I = ("cnt", "tlast", "tcp", "tvreset")
"""Per-slice int64 ``[stack, slices]``: event counts and the traffic tests' times."""
TI_CNT, TI_LAST, TI_CP, TI_VRESET = range(4)
SLICE_B = ("trec", "tdone", "tstate")
"""Traffic-share tests, int8 ``[stack, slices]``."""
TB_REC, TB_DONE, TB_STATE = range(3)


@nb.njit(cache=True, nogil=True)
def run_events(
    ts: np.ndarray,
    cls: np.ndarray,
    dup: np.ndarray,
    lat: np.ndarray,
    lbin: np.ndarray,
    amt: np.ndarray,
    member: np.ndarray,
    tick_us: int,
    rate_f: np.ndarray,
    rate_i: np.ndarray,
    rate_b: np.ndarray,
    rate_w: np.ndarray,
    rcp: np.ndarray,
    slice_f: np.ndarray,
    slice_i: np.ndarray,
    slice_b: np.ndarray,
    tallow: np.ndarray,
    tidx: np.ndarray,
    nf: np.ndarray,
    ni: np.ndarray,
    hist: np.ndarray,
    bhist: np.ndarray,
    acc: np.ndarray,
    hpar: np.ndarray,
    h_rec_t: float,
    h_rec_n: float,
    xrec: np.ndarray,
    xval: np.ndarray,
    n_slices: int,
) -> int:
    """Feed events ``ts[i]`` (non-decreasing) through every test; return #crossings.

    The slice tests' state comes stacked (``rate_f`` ... ``slice_b``, rows named
    by the ``RATE_*``/``SLICE_*`` tuples above), as the national test's does
    (``nf``/``ni``); each row is unpacked once here.
    once-a-tick scan visits only those.
    """
    rw, ra0, ra1 = rate_w[RW_W], rate_w[RW_A0], rate_w[RW_A1]
    rthr, rv, rb0, rb1 = rate_f[RF_THR], rate_f[RF_V], rate_f[RF_B0], rate_f[RF_B1]
    ne = rate_f[RF_NE]
    rlast, rvreset = rate_i[RI_LAST], rate_i[RI_VRESET]
    rrec, rdone = rate_b[RB_REC], rate_b[RB_DONE]
    tw, ta0, ta1, tthr = slice_f[TF_W], slice_f[TF_A0], slice_f[TF_A1], slice_f[TF_THR]
    tv, tb0, tb1, lat_thr = slice_f[TF_V], slice_f[TF_B0], slice_f[TF_B1], slice_f[TF_LATTHR]
    cnt, tlast, tcp, tvreset = slice_i[TI_CNT], slice_i[TI_LAST], slice_i[TI_CP], slice_i[TI_VRESET]
    trec, tdone = slice_b[TB_REC], slice_b[TB_DONE]
    n = ts.shape[0]
    d = member.shape[0]
    k_bank = rw.shape[2]
    nx = 0
    for i in range(n):
        t = ts[i]
        # -- national traffic: continuous-time Poisson CUSUM ---------------------
        if ni[NI_STARTED] == 0:
            ni[NI_STARTED] = 1
            ni[NI_LAST_TS] = t
            ni[NI_LAST_TICK] = t // tick_us
        dt = t - ni[NI_LAST_TS]
        if nf[NF_ARMED] > 0.0:
            w = nf[NF_W] + nf[NF_RATE] * dt
            if w >= nf[NF_THR]:
                rate = nf[NF_RATE]
                need = (nf[NF_THR] - nf[NF_W]) / rate if rate > 0.0 else 0.0
                t_star = ni[NI_LAST_TS] + math.ceil(need)
                disc = ((t_star + tick_us - 1) // tick_us) * tick_us
                disc = min(disc, t)
                if nx < xrec.shape[0]:
                    xrec[nx, X_SLICE] = 0
                    xrec[nx, X_SIGNAL] = SIG_NATIONAL_TRAFFIC
                    xrec[nx, X_BANK] = 0
                    xrec[nx, X_INDEX] = i
                    xrec[nx, X_TS] = disc
                    xrec[nx, X_CP] = ni[NI_CP]
                    xval[nx] = w
                    nx += 1
                nf[NF_THR] = INF
                ni[NI_REC] = 1
                ni[NI_REC_DONE] = 0
                nf[NF_V] = 0.0
                ni[NI_VRESET] = t
                # reverse test from the design alternative until re-estimated
                nf[NF_V_RATE] = nf[NF_RATE]
                nf[NF_V_JUMP] = -nf[NF_LOG_RHO]
            w = w + nf[NF_LOG_RHO]
            if w <= 0.0:
                w = 0.0
                ni[NI_CP] = t
            nf[NF_W] = w
            if ni[NI_REC] == 1 and ni[NI_REC_DONE] == 0:
                v = nf[NF_V] - nf[NF_V_RATE] * dt
                if v <= 0.0:
                    v = 0.0
                    ni[NI_VRESET] = t
                v += nf[NF_V_JUMP]
                nf[NF_V] = v
                if v >= h_rec_n:
                    ni[NI_REC_DONE] = 1
        ni[NI_LAST_TS] = t
        # -- traffic-share scan, once per tick ----------------------------------
        tick = t // tick_us
        big_n = ni[NI_N]
        if tick > ni[NI_LAST_TICK]:
            ni[NI_LAST_TICK] = tick
            for q in range(tidx.shape[0]):
                s = tidx[q]
                thr = tthr[s]
                if thr < INF:
                    w = tw[s] + (big_n - tlast[s]) * ta0[s]
                    if w >= thr:
                        if nx < xrec.shape[0]:
                            xrec[nx, X_SLICE] = s
                            xrec[nx, X_SIGNAL] = SIG_TRAFFIC
                            xrec[nx, X_BANK] = 0
                            xrec[nx, X_INDEX] = i
                            xrec[nx, X_TS] = t
                            xrec[nx, X_CP] = tcp[s]
                            xval[nx] = w
                            nx += 1
                        tw[s] = w
                        tlast[s] = big_n
                        tthr[s] = INF
                        trec[s] = 1
                        tv[s] = 0.0
                        tvreset[s] = t
                        _traffic_recovery_llr(s, ta0, ta1, tb0, tb1)
        big_n += 1
        ni[NI_N] = big_n
        # -- per slice -------------------------------------------------------------
        c = cls[i]
        x_lat = lat[i]
        b = lbin[i]
        is_tech = c in (FAILED, TIMEOUT)
        is_dec = c == DECLINE and not dup[i]
        is_risk = c == RISK and not dup[i]
        any_fail = is_tech or is_dec or is_risk
        if b >= 0:
            bhist[b] += 1
        for j in range(d):
            s = member[j, i]
            if s < 0:
                continue
            # accumulators
            acc[s, F_ATTEMPTS] += 1
            acc[s, F_FEN] += amt[i]
            if c == APPROVED:
                acc[s, F_APPROVED] += 1
            elif is_tech:
                acc[s, F_TECHNICAL] += 1
                acc[s, F_TECH_FEN] += amt[i]
                if c == TIMEOUT:
                    acc[s, F_TIMEOUT] += 1
            elif c == DECLINE:
                acc[s, F_DECLINE] += 1
                if is_dec:
                    acc[s, F_DECLINE_COUNTED] += 1
            elif c == RISK:
                acc[s, F_RISK] += 1
                if is_risk:
                    acc[s, F_RISK_COUNTED] += 1
            # slow = an answer (approved or declined) that took too long; timeouts and
            # failures are technical already and are not counted twice
            slow = False
            if b >= 0:
                hist[s, b] += 1
                slow = x_lat > lat_thr[s] and not is_tech
            if slow:
                acc[s, F_SLOW] += 1
            # traffic share: this event is inside the slice
            if s > 0 and tallow[s]:
                m_out = big_n - 1 - tlast[s]
                w = tw[s] + m_out * ta0[s]
                if w >= tthr[s]:
                    if nx < xrec.shape[0]:
                        xrec[nx, X_SLICE] = s
                        xrec[nx, X_SIGNAL] = SIG_TRAFFIC
                        xrec[nx, X_BANK] = 0
                        xrec[nx, X_INDEX] = i
                        xrec[nx, X_TS] = t
                        xrec[nx, X_CP] = tcp[s]
                        xval[nx] = w
                        nx += 1
                    tthr[s] = INF
                    trec[s] = 1
                    tv[s] = 0.0
                    tvreset[s] = t
                    _traffic_recovery_llr(s, ta0, ta1, tb0, tb1)
                w = w + ta1[s]
                if w <= 0.0:
                    w = 0.0
                    tcp[s] = t
                tw[s] = w
                if trec[s] == 1 and tdone[s] == 0:
                    v = tv[s] + m_out * tb0[s]
                    if v <= 0.0:
                        v = 0.0
                        tvreset[s] = t
                    v += tb1[s]
                    tv[s] = v
                    if v >= h_rec_t:
                        tdone[s] = 1
                tlast[s] = big_n
            # rate tests: only an event that is a "failure" for a signal moves it up
            # (an approved, fast answer only counts: the lazy successes of ``cnt``)
            if not (any_fail or slow):
                cnt[s] += 1
                continue
            for sig in range(N_RATE):
                if sig == SIG_TECHNICAL:
                    y = is_tech
                elif sig == SIG_DECLINE:
                    y = is_dec
                elif sig == SIG_RISK:
                    y = is_risk
                else:
                    y = slow
                if not y:
                    continue
                m = cnt[s] - rlast[s, sig]
                fired = False
                kf = 0
                for k in range(k_bank):
                    w = rw[s, sig, k]
                    if w > 0.0 and m > 0:
                        w = w + m * ra0[s, sig, k]
                        w = max(w, 0.0)
                    if w <= 0.0:
                        rcp[s, sig, k] = t
                    w = w + ra1[s, sig, k]
                    w = max(w, 0.0)
                    rw[s, sig, k] = w
                    if w >= rthr[s, sig] and not fired:
                        fired = True
                        kf = k
                        if nx < xrec.shape[0]:
                            xrec[nx, X_SLICE] = s
                            xrec[nx, X_SIGNAL] = sig
                            xrec[nx, X_BANK] = k
                            xrec[nx, X_INDEX] = i
                            xrec[nx, X_TS] = t
                            xrec[nx, X_CP] = rcp[s, sig, k]
                            xval[nx] = w
                            nx += 1
                if fired:
                    rthr[s, sig] = INF
                    rrec[s, sig] = 1
                    rdone[s, sig] = 0
                    rv[s, sig] = 0.0
                    rvreset[s, sig] = t
                    rb0[s, sig] = -ra0[s, sig, kf]
                    rb1[s, sig] = -ra1[s, sig, kf]
                elif rrec[s, sig] == 1 and rdone[s, sig] == 0:
                    # reverse test: successes are evidence of recovery
                    v = rv[s, sig] + m * rb0[s, sig]
                    if v >= recovery_h(ne[s, 0], hpar):
                        rdone[s, sig] = 1
                    else:
                        v += rb1[s, sig]
                        if v <= 0.0:
                            v = 0.0
                            rvreset[s, sig] = t
                    rv[s, sig] = v
                rlast[s, sig] = cnt[s] + 1
            cnt[s] += 1
    return nx


@nb.njit(cache=True, nogil=True)
def recovery_h(ne0: float, hpar: np.ndarray) -> float:
    """A slice's recovery (reverse-test) threshold from its weighted attempt count.

    The reverse test restarts like any CUSUM: about one false recovery per
    ``e^h`` observations, so ``h = ln(the slice's attempts over the horizon /
    error)``, with ``hpar = [decay per bucket, bucket seconds, horizon seconds,
    error]``. The count changes only at bucket boundaries, so computing it
    where a recovery test needs it (rarely) gives what computing it for every
    slice at each boundary would.
    """
    per_s = ne0 * (1.0 - hpar[0]) / hpar[1]
    obs = max(per_s * hpar[2], 1.0)
    return math.log(obs / hpar[3])


@nb.njit(cache=True, nogil=True)
def _traffic_recovery_llr(
    s: int, ta0: np.ndarray, ta1: np.ndarray, tb0: np.ndarray, tb1: np.ndarray
) -> None:
    """Recovery increments for a traffic-share test that just fired.

    Until the next bucket re-estimates the in-fault share, the fault is taken
    to be the design alternative (the share fell to ``rho`` of normal), so the
    reverse test's increments are the forward ones negated.
    """
    tb0[s] = -ta0[s]
    tb1[s] = -ta1[s]


@nb.njit(cache=True, nogil=True)
def flush(
    rw: np.ndarray,
    ra0: np.ndarray,
    rlast: np.ndarray,
    cnt: np.ndarray,
    rrec: np.ndarray,
    rv: np.ndarray,
    rb0: np.ndarray,
    rvreset: np.ndarray,
    rdone: np.ndarray,
    ne: np.ndarray,
    hpar: np.ndarray,
    tw: np.ndarray,
    ta0: np.ndarray,
    tlast: np.ndarray,
    trec: np.ndarray,
    tv: np.ndarray,
    tb0: np.ndarray,
    tvreset: np.ndarray,
    tdone: np.ndarray,
    big_n: int,
    t_end: int,
    n_slices: int,
) -> None:
    """Apply the pending (lazy) steps of every test up to ``t_end``.

    Only a bucket boundary calls this, so the result does not depend on how
    the stream was batched. Recovery statistics that reach their threshold
    set the ``done`` flags the lifecycle reads.
    """
    s_n = rw.shape[1]
    k_n = rw.shape[2]
    for s in range(n_slices):
        for sig in range(s_n):
            m = cnt[s] - rlast[s, sig]
            if m <= 0:
                continue
            for k in range(k_n):
                w = rw[s, sig, k]
                if w > 0.0:
                    w = w + m * ra0[s, sig, k]
                    rw[s, sig, k] = w if w > 0.0 else 0.0
            if rrec[s, sig] == 1 and rdone[s, sig] == 0:
                v = rv[s, sig] + m * rb0[s, sig]
                rv[s, sig] = v
                if v >= recovery_h(ne[s, 0], hpar):
                    rdone[s, sig] = 1
            rlast[s, sig] = cnt[s]
        if s > 0:
            m_out = big_n - tlast[s]
            if m_out > 0:
                tw[s] = tw[s] + m_out * ta0[s]
                if trec[s] == 1 and tdone[s] == 0:
                    v = tv[s] + m_out * tb0[s]
                    if v <= 0.0:
                        v = 0.0
                        tvreset[s] = t_end
                    tv[s] = v
                tlast[s] = big_n


@nb.njit(cache=True, nogil=True)
def national_silence(nf: np.ndarray, ni: np.ndarray, t_end: int, tick_us: int) -> int:
    """Check the national traffic test for a crossing during silence up to ``t_end``.

    Returns the discovery time (a tick boundary) or -1. Called at bucket
    boundaries: in a replay the boundary is reached because a later event
    arrived, so a long silence is found in the bucket it happened in.
    """
    if nf[NF_ARMED] <= 0.0 or nf[NF_THR] == INF or ni[NI_STARTED] == 0:
        return -1
    dt = t_end - ni[NI_LAST_TS]
    w = nf[NF_W] + nf[NF_RATE] * dt
    if w < nf[NF_THR]:
        return -1
    rate = nf[NF_RATE]
    need = (nf[NF_THR] - nf[NF_W]) / rate if rate > 0.0 else 0.0
    t_star = ni[NI_LAST_TS] + math.ceil(need)
    disc = ((t_star + tick_us - 1) // tick_us) * tick_us
    disc = min(disc, t_end)
    return int(disc)


@nb.njit(cache=True, nogil=True)
def bucket_update(
    acc: np.ndarray,
    n_slices: int,
    decay: float,
    t_decay: float,
    # rate expectations and tests
    xe: np.ndarray,
    ne: np.ndarray,
    season: np.ndarray,
    ext_frozen: np.ndarray,
    rstate: np.ndarray,
    rw: np.ndarray,
    rthr: np.ndarray,
    ra0: np.ndarray,
    ra1: np.ndarray,
    rb0: np.ndarray,
    rb1: np.ndarray,
    fx: np.ndarray,
    fn: np.ndarray,
    p_mean: np.ndarray,
    p_hi: np.ndarray,
    p_llr: np.ndarray,
    lat_thr: np.ndarray,
    ratios: np.ndarray,
    h_rate: float,
    freeze: float,
    prior: float,
    z: float,
    arm: float,
    warm: bool,
    # traffic-share expectations and tests
    te_x: np.ndarray,
    te_n: np.ndarray,
    tstate: np.ndarray,
    tw: np.ndarray,
    tthr: np.ndarray,
    ta0: np.ndarray,
    ta1: np.ndarray,
    tb0: np.ndarray,
    tb1: np.ndarray,
    tfx: np.ndarray,
    tfn: np.ndarray,
    share: np.ndarray,
    tallow: np.ndarray,
    rho_t: float,
    h_traffic: float,
) -> None:
    """One bucket's step of every expectation and test parameter.

    *Expectations* are exponentially weighted counts: ``xe`` failures,
    ``ne`` attempts weighted by the seasonal index of their hour, so
    ``xe / ne`` is the deseasonalised level and ``level x index(now)`` the
    expected rate. A test that is building evidence (above ``freeze`` of its
    threshold), firing or on hold does not learn, so a fault is not absorbed
    into its own expectation. A slice's level is shrunk towards the national
    one with the weight of ``prior`` attempts, and the tests use its upper
    ``z``-sigma bound: an underestimated expectation is what makes a CUSUM
    fire on noise.

    *Tests* get their per-event log-likelihood ratios from it (a bank of
    design ratios), firing tests their reverse (recovery) increments from the
    rate observed since they fired.
    """
    fields = (F_TECHNICAL, F_DECLINE_COUNTED, F_RISK_COUNTED, F_SLOW)
    s_n = xe.shape[1]
    k_n = ratios.shape[0]
    nat = acc[0, F_ATTEMPTS]
    # -- learn ---------------------------------------------------------------------
    for s in range(n_slices):
        n = acc[s, F_ATTEMPTS]
        for sig in range(s_n):
            x = acc[s, fields[sig]]
            if rstate[s, sig] != 0:
                fx[s, sig] += x
                fn[s, sig] += n
                continue
            busy = False
            for k in range(k_n):
                if rw[s, sig, k] > freeze * h_rate:
                    busy = True
            if busy or ext_frozen[s]:
                continue
            xe[s, sig] = xe[s, sig] * decay + x
            ne[s, sig] = ne[s, sig] * decay + n * season[s, sig]
        if s > 0:
            if tstate[s] != 0:
                tfx[s] += n
                tfn[s] += nat
            elif (not ext_frozen[s] and tw[s] <= freeze * h_traffic and rstate[s, 0] == 0
                  and rstate[s, 1] == 0 and rstate[s, 2] == 0 and rstate[s, 3] == 0):
                # a slice under an open wave does not learn its share: a surge of
                # attack traffic would make normal traffic look like a drop after it
                te_x[s] = te_x[s] * t_decay + n
                te_n[s] = te_n[s] * t_decay + nat
    # -- national level first: the prior of every slice ------------------------------
    nat_level = np.empty(s_n)
    for sig in range(s_n):
        if ne[0, sig] > 0.0:
            nat_level[sig] = xe[0, sig] / ne[0, sig]
        else:
            nat_level[sig] = 0.01
        nat_level[sig] = max(nat_level[sig], 1e-5)
    # -- expectations and test increments --------------------------------------------
    for s in range(n_slices):
        for sig in range(s_n):
            m = prior if s > 0 else 0.0
            den = ne[s, sig] + m
            level = (xe[s, sig] + m * nat_level[sig]) / den if den > 0.0 else nat_level[sig]
            p = level * season[s, sig]
            p = max(p, 1e-6)
            p = min(p, 0.45)
            p_mean[s, sig] = p
            hi = p + z * math.sqrt(p * (1.0 - p) / (den + 1.0))
            hi = min(hi, 0.49)
            p_hi[s, sig] = hi
            armed = warm and ne[s, sig] >= arm
            if sig == SIG_LATENCY and lat_thr[s] == INF:
                armed = False
            if rstate[s, sig] == 0:
                rthr[s, sig] = h_rate
            if not armed or rstate[s, sig] == 1:
                if not armed:
                    p_llr[s, sig] = 0.0
                    for k in range(k_n):
                        ra0[s, sig, k] = 0.0
                        ra1[s, sig, k] = 0.0
                        rw[s, sig, k] = 0.0
                if rstate[s, sig] == 1:
                    # recovery increments from the rate seen since firing
                    pf = (fx[s, sig] + 1.0) / (fn[s, sig] + 2.0)
                    floor = 2.0 * p
                    pf = max(pf, floor)
                    pf = min(pf, 0.99)
                    rb1[s, sig] = math.log(p / pf)
                    rb0[s, sig] = math.log((1.0 - p) / (1.0 - pf))
                continue
            # the logs are the costly part: recompute only when the expectation moved
            # by more than 1 % since they were last computed (or the test was unarmed)
            last = p_llr[s, sig]
            if last > 0.0 and abs(hi - last) <= 0.01 * last and ra1[s, sig, 0] != 0.0:
                continue
            p_llr[s, sig] = hi
            for k in range(k_n):
                p1 = min(ratios[k] * hi, 0.5 * (1.0 + hi))
                ra1[s, sig, k] = math.log(p1 / hi)
                ra0[s, sig, k] = math.log((1.0 - p1) / (1.0 - hi))
        # traffic share (drop to rho_t of normal)
        if s > 0 and tallow[s]:
            ps = te_x[s] / te_n[s] if te_n[s] > 0.0 else 0.0
            share[s] = ps
            armed_t = warm and te_x[s] >= arm and 0.0 < ps < 0.95
            if tstate[s] == 0:
                tthr[s] = h_traffic
            if not armed_t:
                if tstate[s] == 0:
                    ta0[s] = 0.0
                    ta1[s] = 0.0
                    tw[s] = 0.0
                continue
            if tstate[s] == 1:
                pf = tfx[s] / tfn[s] if tfn[s] > 0.0 else rho_t * ps
                ceil_ = 0.5 * ps
                pf = min(pf, ceil_)
                pf = max(pf, 1e-6)
                tb1[s] = math.log(ps / pf)
                tb0[s] = math.log((1.0 - ps) / (1.0 - pf))
                continue
            ta1[s] = math.log(rho_t)
            ta0[s] = math.log((1.0 - rho_t * ps) / (1.0 - ps))


@nb.njit(cache=True, nogil=True)
def latency_thresholds(
    hist: np.ndarray,
    prev: np.ndarray,
    n_slices: int,
    q: float,
    factor: float,
    edges: np.ndarray,
    min_count: int,
    frozen: np.ndarray,
    out: np.ndarray,
) -> None:
    """``factor`` x the ``q``-quantile of each slice's latency over the last two windows."""
    b_n = hist.shape[1]
    for s in range(n_slices):
        if frozen[s]:
            continue
        total = 0
        for b in range(b_n):
            total += hist[s, b] + prev[s, b]
        if total < min_count:
            continue
        target = q * total
        run = 0
        for b in range(b_n):
            run += hist[s, b] + prev[s, b]
            if run >= target:
                out[s] = factor * edges[b + 1]
                break


@nb.njit(cache=True, nogil=True)
def cusum_max(
    y: np.ndarray, a0: np.ndarray, a1: np.ndarray
) -> tuple[float, int, int]:
    """Largest CUSUM value over a sequence, for each design in a bank.

    Returns ``(max W, index where it peaked, index where that run started)``:
    the run start is the change-point estimate. Used on the recent-events
    buffer to test a slice with another alert's events taken out.
    """
    best = 0.0
    best_i = -1
    best_start = -1
    for k in range(a0.shape[0]):
        w = 0.0
        start = 0
        for i in range(y.shape[0]):
            if w <= 0.0:
                start = i
            w = w + (a1[k] if y[i] else a0[k])
            w = max(w, 0.0)
            if w > best:
                best = w
                best_i = i
                best_start = start
    return best, best_i, best_start


@nb.njit(cache=True, nogil=True)
def hash_codes(
    table: np.ndarray, codes_of: np.ndarray, hashes: np.ndarray, valid: np.ndarray,
    out: np.ndarray, new_rows: np.ndarray, n_codes: int,
) -> int:
    """Dense, stable codes for 64-bit value hashes (open addressing, linear probing).

    ``table`` holds hashes (0 = empty; a real 0 hash is stored as 1), ``codes_of``
    their codes. New values get the next code, and the row where each first
    appeared goes to ``new_rows`` so the caller can read its text. Returns the
    new number of codes. The caller keeps the table at most half full.
    """
    mask = table.shape[0] - 1
    n_new = 0
    for i in range(hashes.shape[0]):
        if not valid[i]:
            out[i] = -1
            continue
        h = hashes[i]
        if h == 0:
            h = np.uint64(1)
        pos = np.int64(h & np.uint64(mask))
        while True:
            k = table[pos]
            if k == h:
                out[i] = codes_of[pos]
                break
            if k == 0:
                table[pos] = h
                codes_of[pos] = n_codes
                out[i] = n_codes
                new_rows[n_new] = i
                n_new += 1
                n_codes += 1
                if 2 * n_codes > table.shape[0]:
                    return -n_codes
                break
            pos = np.int64((pos + 1) & mask)
    return n_codes


@nb.njit(cache=True, nogil=True)
def rehash(table: np.ndarray, codes_of: np.ndarray, new_table: np.ndarray,
           new_codes: np.ndarray) -> None:
    mask = new_table.shape[0] - 1
    for pos in range(table.shape[0]):
        h = table[pos]
        if h == 0:
            continue
        p = np.int64(h & np.uint64(mask))
        while new_table[p] != 0:
            p = np.int64((p + 1) & mask)
        new_table[p] = h
        new_codes[p] = codes_of[pos]


@nb.njit(cache=True, nogil=True)
def first_taps(table: np.ndarray, seen: np.ndarray, pay: np.ndarray, ts: np.ndarray,
               window: int, out: np.ndarray) -> int:
    """Mark the first attempt of each tap: a payment hash not seen within ``window``.

    ``table``/``seen`` is an open-addressing map hash -> last time seen. Returns
    the number of occupied slots (the caller rebuilds the table, dropping
    stale entries, when it gets half full).
    """
    mask = table.shape[0] - 1
    used = 0
    for i in range(pay.shape[0]):
        h = pay[i]
        if h == 0:
            h = np.uint64(1)
        pos = np.int64(h & np.uint64(mask))
        while True:
            k = table[pos]
            if k == h:
                out[i] = ts[i] - seen[pos] > window
                seen[pos] = ts[i]
                break
            if k == 0:
                table[pos] = h
                seen[pos] = ts[i]
                out[i] = True
                used += 1
                break
            pos = np.int64((pos + 1) & mask)
    return used


@nb.njit(cache=True, nogil=True)
def compact_taps(table: np.ndarray, seen: np.ndarray, new_table: np.ndarray,
                 new_seen: np.ndarray, cutoff: int) -> int:
    """Copy the entries seen at or after ``cutoff`` into a fresh table."""
    mask = new_table.shape[0] - 1
    n = 0
    for pos in range(table.shape[0]):
        h = table[pos]
        if h == 0 or seen[pos] < cutoff:
            continue
        p = np.int64(h & np.uint64(mask))
        while new_table[p] != 0:
            p = np.int64((p + 1) & mask)
        new_table[p] = h
        new_seen[p] = seen[pos]
        n += 1
    return n


@nb.njit(cache=True, nogil=True)
def classify(outcome: np.ndarray, tech_code: np.ndarray, risk: np.ndarray,
             out: np.ndarray) -> None:
    """Outcome class per attempt from enum codes (approved 0, declined 1, failed 2, timeout 3)."""
    for i in range(outcome.shape[0]):
        o = outcome[i]
        if o == 0:
            out[i] = APPROVED
        elif o == 2:
            out[i] = FAILED
        elif o == 3:
            out[i] = TIMEOUT
        elif tech_code[i]:
            out[i] = FAILED
        elif risk[i]:
            out[i] = RISK
        else:
            out[i] = DECLINE


@nb.njit(cache=True, nogil=True)
def poisson_quantile(q: float, lam: float) -> float:
    """Smallest ``k`` with ``P(X <= k) >= q`` for ``X ~ Poisson(lam)``."""
    if lam <= 0.0:
        return 0.0
    if lam > 400.0:
        # Cornish-Fisher (normal plus skewness term): within a count of the exact value
        z = 3.090232306167813 if q >= 0.999 else 1.6448536269514722
        return math.floor(lam + z * math.sqrt(lam) + (z * z - 1.0) / 6.0 + 0.5)
    p = math.exp(-lam)
    cdf = p
    k = 0
    while cdf < q and k < 100000:
        k += 1
        p *= lam / k
        cdf += p
    return float(k)


@nb.njit(cache=True, nogil=True)
def top_count(values: np.ndarray) -> int:
    """How often the most frequent value occurs (``np.unique(..., return_counts=True)``'s
    maximum, without its allocations: the lifecycle asks for every wave at every
    bucket)."""
    if values.shape[0] == 0:
        return 0
    v = np.sort(values)
    best = 1
    run = 1
    for i in range(1, v.shape[0]):
        if v[i] == v[i - 1]:
            run += 1
        else:
            run = 1
        best = max(best, run)
    return best


@nb.njit(cache=True, nogil=True)
def first_amounts(keys: np.ndarray, amounts: np.ndarray) -> tuple[int, int]:
    """Distinct ``keys`` and the sum of ``amounts`` at each key's first occurrence
    (a payment's amount counted once however many of its attempts failed)."""
    n = keys.shape[0]
    if n == 0:
        return 0, 0
    order = np.argsort(keys, kind="mergesort")
    distinct = 1
    total = amounts[order[0]]
    for r in range(1, n):
        i = order[r]
        if keys[i] != keys[order[r - 1]]:
            distinct += 1
            total += amounts[i]
    return distinct, total


@nb.njit(cache=True, nogil=True)
def close_rates(
    rate_f: np.ndarray,
    rate_i: np.ndarray,
    rate_b: np.ndarray,
    rate_w: np.ndarray,
    slice_f: np.ndarray,
    slice_i: np.ndarray,
    slice_b: np.ndarray,
    tallow: np.ndarray,
    ext_frozen: np.ndarray,
    acc: np.ndarray,
    hpar: np.ndarray,
    ratios: np.ndarray,
    big_n: int,
    t_end: int,
    n_slices: int,
    decay: float,
    t_decay: float,
    freeze: float,
    prior: float,
    z: float,
    arm: float,
    rho_t: float,
    h_rate: float,
    h_traffic: float,
    warm: bool,
    rec_out: np.ndarray,
) -> int:
    """A bucket boundary's work on the slice tests in one call: :func:`flush`, then
    :func:`bucket_update`, then the list of tests whose recovery statistic is done.

    One compiled call instead of several dispatches and NumPy passes per bucket
    (a day has 8,640 buckets). Returns the number of rows of ``rec_out`` filled,
    rate tests first (slice-major), then traffic-share tests.
    """
    rw, ra0, ra1 = rate_w[RW_W], rate_w[RW_A0], rate_w[RW_A1]
    rthr, rv, rb0, rb1 = rate_f[RF_THR], rate_f[RF_V], rate_f[RF_B0], rate_f[RF_B1]
    xe, ne, season = rate_f[RF_XE], rate_f[RF_NE], rate_f[RF_SEASON]
    fx, fn, p_mean = rate_f[RF_FX], rate_f[RF_FN], rate_f[RF_PMEAN]
    p_hi, p_llr = rate_f[RF_PHI], rate_f[RF_PLLR]
    rlast, rvreset = rate_i[RI_LAST], rate_i[RI_VRESET]
    rrec, rdone, rstate = rate_b[RB_REC], rate_b[RB_DONE], rate_b[RB_STATE]
    tw, ta0, ta1, tthr = slice_f[TF_W], slice_f[TF_A0], slice_f[TF_A1], slice_f[TF_THR]
    tv, tb0, tb1, lat_thr = slice_f[TF_V], slice_f[TF_B0], slice_f[TF_B1], slice_f[TF_LATTHR]
    te_x, te_n, tfx, tfn = slice_f[TF_EX], slice_f[TF_EN], slice_f[TF_FX], slice_f[TF_FN]
    share = slice_f[TF_SHARE]
    cnt, tlast, tvreset = slice_i[TI_CNT], slice_i[TI_LAST], slice_i[TI_VRESET]
    trec, tdone, tstate = slice_b[TB_REC], slice_b[TB_DONE], slice_b[TB_STATE]
    flush(rw, ra0, rlast, cnt, rrec, rv, rb0, rvreset, rdone, ne, hpar, tw, ta0, tlast, trec, tv,
          tb0, tvreset, tdone, big_n, t_end, n_slices)
    bucket_update(acc, n_slices, decay, t_decay, xe, ne, season, ext_frozen, rstate, rw, rthr,
                  ra0, ra1, rb0, rb1, fx, fn, p_mean, p_hi, p_llr, lat_thr, ratios, h_rate,
                  freeze, prior, z, arm, warm, te_x, te_n, tstate, tw, tthr, ta0, ta1, tb0, tb1,
                  tfx, tfn, share, tallow, rho_t, h_traffic)
    k = 0
    s_n = rdone.shape[1]
    for s in range(n_slices):
        for sig in range(s_n):
            if rdone[s, sig] != 0:
                rec_out[k, 0] = s
                rec_out[k, 1] = sig
                rec_out[k, 2] = rvreset[s, sig]
                k += 1
    for s in range(n_slices):
        if tdone[s] != 0:
            rec_out[k, 0] = s
            rec_out[k, 1] = SIG_TRAFFIC
            rec_out[k, 2] = tvreset[s]
            k += 1
    return k


@nb.njit(cache=True, nogil=True)
def learn_bucket(acc: np.ndarray, n_slices: int, rstate: np.ndarray, ext_frozen: np.ndarray,
                 fields: np.ndarray, learning: np.ndarray, nat_learning: np.ndarray,
                 hour: int) -> None:
    """Add a closed bucket's counts to the hour's profile, for slices whose rate tests
    are all idle and that are not under maintenance (faults are not normal)."""
    for s in range(n_slices):
        if ext_frozen[s]:
            continue
        idle = True
        for sig in range(rstate.shape[1]):
            if rstate[s, sig] != 0:
                idle = False
        if not idle:
            continue
        for j in range(fields.shape[0]):
            learning[s, hour, j] += acc[s, fields[j]]
        if s == 0:
            nat_learning[hour, 0] += float(acc[0, F_ATTEMPTS])
            nat_learning[hour, 1] += 1.0


@nb.njit(cache=True, nogil=True)
def finish_bucket(acc: np.ndarray, cum: np.ndarray, n_slices: int, bhist: np.ndarray,
                  edges: np.ndarray, qs: np.ndarray, tl_acc: np.ndarray, tl_q: np.ndarray,
                  row: int) -> None:
    """The closed bucket's timeline row (national counts and latency quantiles, NaN
    when empty), then its counts move to the running totals and the bucket
    accumulators start again."""
    for f in range(acc.shape[1]):
        tl_acc[row, f] = acc[0, f]
    total = 0
    for b in range(bhist.shape[0]):
        total += bhist[b]
    for j in range(qs.shape[0]):
        if total <= 0:
            tl_q[row, j] = np.nan
            continue
        target = qs[j] * float(total)
        run = 0
        b_hit = bhist.shape[0] - 1
        for b in range(bhist.shape[0]):
            run += bhist[b]
            if float(run) >= target:
                b_hit = b
                break
        tl_q[row, j] = math.sqrt(edges[b_hit] * edges[b_hit + 1])
    for s in range(n_slices):
        for f in range(acc.shape[1]):
            cum[s, f] += acc[s, f]
            acc[s, f] = 0
    for b in range(bhist.shape[0]):
        bhist[b] = 0


@nb.njit(cache=True, nogil=True)
def member_set(c0: np.ndarray, c1: np.ndarray, stride: int, slice_of: np.ndarray,
               counts: np.ndarray, min_events: int, out: np.ndarray, new_rows: np.ndarray,
               next_index: int, max_slices: int) -> tuple[int, int]:
    """Slice index of each event in one slice set, allocating slices as they qualify.

    ``c0``/``c1`` are the dimension codes (``c1`` empty for a one-dimension set;
    -1 = missing), ``slice_of[c0 * stride + c1]`` the slice (-1 not watched yet,
    -2 never: ``max_slices`` was reached), ``counts`` the events seen of slices
    not watched yet. A slice is allocated at its ``min_events``-th event, in
    stream order, with the next index; its rows go to ``new_rows``. Returns
    ``(slices allocated, slices refused for lack of room)``.
    """
    two = c1.shape[0] > 0
    n_new = 0
    refused = 0
    for i in range(c0.shape[0]):
        a = c0[i]
        if a < 0:
            out[i] = -1
            continue
        key = a
        if two:
            b = c1[i]
            if b < 0:
                out[i] = -1
                continue
            key = a * stride + b
        v = slice_of[key]
        if v >= 0:
            out[i] = v
            continue
        out[i] = -1
        if v == -2:
            continue
        counts[key] += 1
        if counts[key] < min_events:
            continue
        if next_index >= max_slices:
            slice_of[key] = -2
            refused += 1
            continue
        slice_of[key] = next_index
        out[i] = next_index
        new_rows[n_new] = i
        n_new += 1
        next_index += 1
    return n_new, refused
