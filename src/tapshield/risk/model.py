"""The fraud model: LightGBM on a time split, calibrated, gated, explained.

Training replays the history through the feature state machine (so a
training row sees exactly what the live engine would have seen: requests
before it, labels reported before it), keeps the latest labelled requests
(``valid_share`` of them, by time) aside, and trains on the earlier ones:

* **early stopping** and **calibration** (Platt scaling of the raw score,
  fitted on the later slice) use only that later slice, so the probability
  ``score`` means what it says on traffic the trees never saw;
* **thresholds** come from the false-decline budget on the same slice
  (:mod:`tapshield.risk.thresholds`);
* the **promotion gate** compares a candidate with the current model on the
  same slice: the candidate replaces it only if it is better there.

Genuine rows of the training slice are down-sampled (every fraud kept,
genuine rows weighted back up) so a year of history trains in minutes; the
later slice is never sampled.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tapshield.errors import ContractError
from tapshield.risk.features import FEATURES, FeatureConfig, FeatureState
from tapshield.risk.metrics import average_precision, recall_at
from tapshield.risk.thresholds import Budget, Thresholds, choose_thresholds
from tapshield.risk.trees import Forest

MODEL_FILE = "model.txt"
META_FILE = "model.json"
STATE_FILE = "state.npz"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """LightGBM settings and the split. Defaults were chosen on the early weeks of
    the development data only (docs/risk.md, BENCHMARKS.md)."""

    num_leaves: int = 31
    learning_rate: float = 0.02
    max_rounds: int = 900
    early_stopping: int = 120
    min_rounds: int = 60
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.5
    bagging_fraction: float = 0.8
    lambda_l2: float = 5.0
    valid_share: float = 0.2
    max_genuine: int = 250_000
    refit: bool = False
    seed: int = 7
    threads: int = 1
    """LightGBM threads. One by default: on a shared host OpenMP threads that wait
    for a busy core stalled a 2-thread training run for half an hour."""

    def params(self) -> dict[str, Any]:
        return {
            "objective": "binary", "verbose": -1, "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate, "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction, "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1, "lambda_l2": self.lambda_l2, "seed": self.seed,
            "num_threads": self.threads, "deterministic": True, "force_col_wise": True,
            "metric": "average_precision",
        }


@dataclass(slots=True)
class RiskModel:
    """A trained, calibrated model with its thresholds: what the engine loads."""

    version: str
    booster: Any
    forest: Forest
    engineered: list[str]
    """Engineered features the model reads (a subset of ``FEATURES``)."""
    lender: list[str]
    """The lender's ``f_`` columns the model reads."""
    calibration: tuple[float, float]
    thresholds: Thresholds
    feature_config: FeatureConfig
    meta: dict[str, Any] = field(default_factory=dict)
    eng_index: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        pos = {n: i for i, n in enumerate(FEATURES)}
        self.eng_index = np.asarray([pos[n] for n in self.engineered], np.int64)

    @property
    def columns(self) -> list[str]:
        return [*self.engineered, *self.lender]

    def matrix(self, eng: np.ndarray, lender: np.ndarray | None) -> np.ndarray:
        """Model input rows (float32, as the state machine computes them) from
        engineered features and the lender's columns."""
        x = eng[:, self.eng_index]
        if self.lender:
            assert lender is not None
            x = np.hstack([x, np.asarray(lender, np.float32)])
        return np.ascontiguousarray(x, np.float32)

    def proba(self, raw: np.ndarray) -> np.ndarray:
        a, b = self.calibration
        return 1.0 / (1.0 + np.exp(-np.clip(a * raw + b, -700, 700)))

    def raw_batch(self, x: np.ndarray) -> np.ndarray:
        """Raw scores of many rows (LightGBM's own multi-threaded predictor)."""
        return np.asarray(self.booster.predict(x, raw_score=True,
                                               num_threads=self.meta.get("threads", 2)))

    # -- files -------------------------------------------------------------------------

    def save(self, out: Path | str) -> None:
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(d / MODEL_FILE))
        meta = {
            "format": FORMAT_VERSION,
            "version": self.version,
            "engineered": self.engineered,
            "lender": self.lender,
            "calibration": list(self.calibration),
            "thresholds": self.thresholds.to_dict(),
            "feature_config": self.feature_config.to_dict(),
            **{k: v for k, v in self.meta.items() if k not in ("version",)},
        }
        (d / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")

    @classmethod
    def load(cls, path: Path | str) -> RiskModel:
        import lightgbm as lgb

        d = Path(path)
        if not (d / MODEL_FILE).exists() or not (d / META_FILE).exists():
            raise ContractError(f"{d}: not a model directory (needs {MODEL_FILE} and {META_FILE})")
        meta = json.loads((d / META_FILE).read_text())
        if int(meta.get("format", 0)) != FORMAT_VERSION:
            raise ContractError(f"{d}: model format {meta.get('format')} is not supported")
        booster = lgb.Booster(model_file=str(d / MODEL_FILE))
        forest = Forest.from_dump(booster.dump_model())
        rest = {k: v for k, v in meta.items() if k not in (
            "format", "engineered", "lender", "calibration", "thresholds", "feature_config")}
        return cls(
            version=str(meta["version"]), booster=booster, forest=forest,
            engineered=list(meta["engineered"]), lender=list(meta["lender"]),
            calibration=(float(meta["calibration"][0]), float(meta["calibration"][1])),
            thresholds=Thresholds.from_dict(meta["thresholds"]),
            feature_config=FeatureConfig.from_dict(meta["feature_config"]), meta=rest,
        )


# -- training data ---------------------------------------------------------------------


@dataclass(slots=True)
class TrainingSet:
    """Feature rows of the labelled requests, split by time."""

    eng_train: np.ndarray
    lender_train: np.ndarray
    y_train: np.ndarray
    w_train: np.ndarray
    eng_valid: np.ndarray
    lender_valid: np.ndarray
    y_valid: np.ndarray
    amount_valid: np.ndarray
    cutoff: datetime
    state: FeatureState
    counts: dict[str, int]


def last_labels(labels: pl.DataFrame) -> pl.DataFrame:
    """The latest label of each request (a correction replaces the first report)."""
    return labels.sort("reported_at").unique("event_id", keep="last")


def training_set(requests: pl.DataFrame, labels: pl.DataFrame, lender: list[str], *,
                 config: TrainConfig, feature_config: FeatureConfig,
                 as_of: datetime | None = None) -> TrainingSet:
    """Replay ``requests`` with ``labels`` and keep the rows to train and validate on.

    ``as_of``: only labels reported by then are used as targets (a model
    trained "on 1 July" knows only the labels of 1 July); features always use a
    label only from its ``reported_at`` on.
    """
    targets = last_labels(labels if as_of is None else
                          labels.filter(pl.col("reported_at") <= as_of))
    y_all = (requests.select("event_id").join(targets.select("event_id", "label"),
                                               on="event_id", how="left", maintain_order="left")
             ["label"].fill_null(-1).to_numpy().astype(np.int8))
    labelled = y_all >= 0
    if labelled.sum() < 50 or (y_all == 1).sum() < 5:
        raise ContractError(
            f"too few labelled requests to train on ({int(labelled.sum())} labelled, "
            f"{int((y_all == 1).sum())} fraud); need at least 50 and 5")
    ts = requests["ts"].dt.epoch("us").to_numpy()
    cut_us = int(np.quantile(ts[labelled], 1.0 - config.valid_share))
    valid = labelled & (ts >= cut_us)
    train = labelled & (ts < cut_us)
    rng = np.random.default_rng(config.seed)
    n_gen = int((train & (y_all == 0)).sum())
    rate = min(1.0, config.max_genuine / max(1, n_gen))
    keep = train & ((y_all == 1) | (rng.random(y_all.size) < rate))
    state = FeatureState(feature_config)
    lender_all = (requests.select(lender).to_numpy().astype(np.float32) if lender
                  else np.zeros((requests.height, 0), np.float32))
    parts_t: list[np.ndarray] = []
    parts_v: list[np.ndarray] = []
    rows_t: list[np.ndarray] = []
    rows_v: list[np.ndarray] = []
    for rows, feats in state.iter_batch(requests, labels):
        kt = keep[rows]
        kv = valid[rows]
        parts_t.append(feats[kt])
        rows_t.append(rows[kt])
        parts_v.append(feats[kv])
        rows_v.append(rows[kv])
    rt = np.concatenate(rows_t) if rows_t else np.zeros(0, np.int64)
    rv = np.concatenate(rows_v) if rows_v else np.zeros(0, np.int64)
    yt = y_all[rt]
    amount = requests["amount_fen"].to_numpy()
    return TrainingSet(
        eng_train=np.concatenate(parts_t), lender_train=lender_all[rt], y_train=yt,
        w_train=np.where(yt == 1, 1.0, 1.0 / rate),
        eng_valid=np.concatenate(parts_v), lender_valid=lender_all[rv], y_valid=y_all[rv],
        amount_valid=amount[rv],
        cutoff=datetime.fromtimestamp(cut_us / 1e6, tz=UTC), state=state,
        counts={"requests": requests.height, "labelled": int(labelled.sum()),
                "fraud": int((y_all == 1).sum()), "train_rows": int(rt.size),
                "train_fraud": int((yt == 1).sum()), "valid_rows": int(rv.size),
                "valid_fraud": int((y_all[rv] == 1).sum()),
                "genuine_sample_rate_milli": round(rate * 1000)},
    )


def _useful(eng: np.ndarray) -> list[str]:
    """Engineered features that vary in training (all-missing ones are dropped:
    a data set without device ids has no device features)."""
    out = []
    for j, name in enumerate(FEATURES):
        col = eng[:, j]
        ok = col[~np.isnan(col)]
        if ok.size and float(ok.min()) != float(ok.max()):
            out.append(name)
    return out


SMOOTH = 15
"""Rounds averaged before picking the best one: with a few dozen frauds in the
later slice, average precision jumps from round to round, and stopping on one
lucky round kept 3 trees once (AP 0.003 on the next weeks)."""


def _smoothed(history: list[float]) -> np.ndarray:
    h = np.asarray(history, np.float64)
    c = np.cumsum(np.r_[0.0, h])
    k = np.minimum(np.arange(1, h.size + 1), SMOOTH)
    out: np.ndarray = (c[1:] - c[np.arange(1, h.size + 1) - k]) / k
    return out


def _best_round(history: list[float], cfg: TrainConfig) -> int:
    """The round (1-based) with the best smoothed validation score, at least ``min_rounds``."""
    if not history:
        return cfg.max_rounds
    sm = _smoothed(history)
    lo = min(cfg.min_rounds, sm.size) - 1
    return int(lo + np.argmax(sm[lo:]) + 1)


def _stopper(cfg: TrainConfig, history: list[float]) -> Any:
    """Early stopping on the smoothed score, never before ``min_rounds``."""
    import lightgbm as lgb

    def callback(env: Any) -> None:
        history.append(float(env.evaluation_result_list[0][2]))
        i = env.iteration + 1
        if i < cfg.min_rounds:
            return
        best = _best_round(history, cfg)
        if i - best >= cfg.early_stopping:
            raise lgb.callback.EarlyStopException(best - 1, env.evaluation_result_list)

    callback.order = 30  # type: ignore[attr-defined]
    return callback


def fit_platt(raw: np.ndarray, y: np.ndarray, iters: int = 50) -> tuple[float, float]:
    """Platt scaling ``p = 1 / (1 + exp(-(a raw + b)))`` by Newton's method on the
    log-loss, with Platt's smoothed targets (no infinite slope on separable data)."""
    pos = float((y == 1).sum())
    neg = float((y == 0).sum())
    t = np.where(y == 1, (pos + 1) / (pos + 2), 1 / (neg + 2))
    a, b = 1.0, 0.0
    for _ in range(iters):
        z = np.clip(a * raw + b, -35, 35)
        p = 1.0 / (1.0 + np.exp(-z))
        g = p - t
        w = np.maximum(p * (1 - p), 1e-12)
        ga, gb = float(np.dot(g, raw)), float(g.sum())
        haa = float(np.dot(w, raw * raw)) + 1e-9
        hab = float(np.dot(w, raw))
        hbb = float(w.sum()) + 1e-9
        det = haa * hbb - hab * hab
        if det <= 0:
            break
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        a, b = a - da, b - db
        if abs(da) < 1e-10 and abs(db) < 1e-10:
            break
    return float(a), float(b)


@dataclass(slots=True)
class TrainResult:
    model: RiskModel
    state: FeatureState
    report: dict[str, Any]
    valid_scores: np.ndarray
    data: TrainingSet


def train(requests: pl.DataFrame, labels: pl.DataFrame, *, lender: list[str] | None = None,
          config: TrainConfig | None = None, budget: Budget | None = None,
          feature_config: FeatureConfig | None = None, as_of: datetime | None = None,
          version: str | None = None) -> TrainResult:
    """Train, calibrate and choose thresholds; the requests must be validated."""
    import lightgbm as lgb

    cfg = config or TrainConfig()
    bud = budget or Budget()
    fcfg = feature_config or FeatureConfig()
    lender = list(lender or [])
    data = training_set(requests, labels, lender, config=cfg, feature_config=fcfg, as_of=as_of)
    names = _useful(data.eng_train)
    pos = [FEATURES.index(n) for n in names]

    def mat(eng: np.ndarray, lend: np.ndarray) -> np.ndarray:
        return np.hstack([eng[:, pos].astype(np.float64), lend.astype(np.float64)])

    xt, xv = mat(data.eng_train, data.lender_train), mat(data.eng_valid, data.lender_valid)
    cols = [*names, *lender]
    params = cfg.params()
    dtrain = lgb.Dataset(xt, data.y_train, weight=data.w_train, feature_name=cols,
                         free_raw_data=True)
    dvalid = lgb.Dataset(xv, data.y_valid, reference=dtrain, feature_name=cols)
    history: list[float] = []
    booster = lgb.train(params, dtrain, num_boost_round=cfg.max_rounds, valid_sets=[dvalid],
                        callbacks=[_stopper(cfg, history)])
    best = _best_round(history, cfg)
    raw_v = np.asarray(booster.predict(xv, raw_score=True, num_iteration=best))
    a, b = fit_platt(raw_v, data.y_valid)
    p_v = 1.0 / (1.0 + np.exp(-np.clip(a * raw_v + b, -700, 700)))
    thresholds = choose_thresholds(p_v, data.y_valid, data.amount_valid, bud)
    if cfg.refit:
        xall = np.vstack([xt, xv])
        yall = np.concatenate([data.y_train, data.y_valid])
        wall = np.concatenate([data.w_train, np.ones(data.y_valid.size)])
        booster = lgb.train(params | {"metric": "none"}, lgb.Dataset(xall, yall, weight=wall,
                            feature_name=cols), num_boost_round=int(best * 1.1))
    else:
        booster = booster.model_from_string(booster.model_to_string(num_iteration=best))
    text = booster.model_to_string()
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    ver = version or f"model-{stamp}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    report = {
        "version": ver,
        "trained_at": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "cutoff": data.cutoff.isoformat(),
        "as_of": as_of.isoformat() if as_of else None,
        "rounds": best,
        "refit": cfg.refit,
        "counts": data.counts,
        "valid": {"average_precision": average_precision(data.y_valid, p_v),
                  "recall_at_0.05%": recall_at(data.y_valid, p_v, 0.0005),
                  "recall_at_0.1%": recall_at(data.y_valid, p_v, 0.001),
                  "recall_at_1%": recall_at(data.y_valid, p_v, 0.01)},
        "config": asdict(cfg),
        "budget": bud.to_dict(),
        "threads": cfg.threads,
        "unmatched_labels": data.state.unmatched_labels,
    }
    model = RiskModel(version=ver, booster=booster, forest=Forest.from_dump(booster.dump_model()),
                      engineered=names, lender=lender, calibration=(a, b),
                      thresholds=thresholds, feature_config=fcfg, meta=report)
    return TrainResult(model=model, state=data.state, report=report, valid_scores=p_v,
                       data=data)


@dataclass(frozen=True, slots=True)
class GateResult:
    """Whether a candidate may replace the current model, and the evidence."""

    promote: bool
    candidate: dict[str, float]
    current: dict[str, float]
    rows: int
    frauds: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gate(result: TrainResult, current: RiskModel, *, min_gain: float = 0.0) -> GateResult:
    """Compare the candidate with ``current`` on the latest labelled weeks.

    Both are scored on the same validation rows (the candidate's held-out
    slice). The candidate is promoted only if its average precision there is
    higher by more than ``min_gain`` and its recall at the decline budget is
    not lower.
    """
    data = result.data
    cand = result.valid_scores
    missing = [c for c in current.lender if c not in result.model.lender]
    if missing:
        return GateResult(False, {}, {}, 0, 0, f"current model reads {missing[0]}, absent here")
    pos = {n: i for i, n in enumerate(result.model.lender)}
    lend = (data.lender_valid[:, [pos[c] for c in current.lender]] if current.lender
            else None)
    cur = current.proba(current.raw_batch(current.matrix(data.eng_valid, lend)))
    y = data.y_valid
    rate = result.model.thresholds.budget.decline
    c_m = {"average_precision": average_precision(y, cand), "recall_at_budget": recall_at(
        y, cand, rate)}
    o_m = {"average_precision": average_precision(y, cur), "recall_at_budget": recall_at(
        y, cur, rate)}
    better = (c_m["average_precision"] > o_m["average_precision"] + min_gain
              and c_m["recall_at_budget"] >= o_m["recall_at_budget"])
    why = ("candidate beats the current model on the latest labelled weeks" if better else
           "candidate does not beat the current model on the latest labelled weeks; "
           "current kept")
    return GateResult(better, c_m, o_m, int(y.size), int((y == 1).sum()), why)


def iter_chunks(frame: pl.DataFrame, size: int) -> Iterator[pl.DataFrame]:
    for start in range(0, frame.height, size):
        yield frame.slice(start, size)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0
