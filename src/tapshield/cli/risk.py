"""``tapshield risk``: train the fraud model, score requests, backtest a change.

Imports of the risk engine (LightGBM, Numba kernels) happen inside the
commands, so ``tapshield --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from tapshield.cli._app import (
    EXIT_REJECTS,
    UsageError,
    app,
    console,
    err_console,
    esc,
    friendly,
)

if TYPE_CHECKING:
    import polars as pl

    from tapshield.risk.contract import Requests
    from tapshield.risk.rules import RuleSet

risk_app = typer.Typer(
    name="risk", help="Real-time risk control: train, score, backtest (docs/risk.md).",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.add_typer(risk_app, name="risk")

def parse_duration(text: str) -> timedelta:
    """An option's duration, in the grammar of every config file
    (:func:`tapshield.timeutil.parse_duration`)."""
    from tapshield.timeutil import parse_duration as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _requests(path: Path, layout: str, max_rejects: int, rejects_to: Path) -> Requests:
    from tapshield.risk.contract import read_requests

    req = read_requests(path, layout=layout)
    if req.rejects.height:
        rejects_to.parent.mkdir(parents=True, exist_ok=True)
        req.rejects.write_csv(rejects_to)
        shown = req.rejects.head(3).select("row", "errors").rows()
        for row, errors in shown:
            err_console.print(f"[yellow]rejected:[/] row {row}: {esc(errors)}", highlight=False)
        err_console.print(f"{req.rejects.height:,} request rows rejected -> {esc(rejects_to)}",
                          highlight=False)
    if req.layout != "contract":
        err_console.print(f"[dim]{esc(path.name)}: read as the public {req.layout} layout "
                          "(docs/risk.md)[/]", highlight=False)
    return req


def _labels(path: Path | None, layout: str, delay: str, req: pl.DataFrame | None,
            src: Path | None, rejects_to: Path) -> pl.DataFrame:
    from tapshield.risk.contract import empty_labels, read_labels

    if path is None:
        return empty_labels()
    same = src is not None and path.resolve() == src.resolve()
    labels, rejects = read_labels(path, layout=layout, label_delay=parse_duration(delay),
                                  requests=req if same else None)
    if rejects.height:
        rejects.write_csv(rejects_to)
        err_console.print(f"{rejects.height:,} label rows rejected -> {esc(rejects_to)}",
                          highlight=False)
    return labels


def _rules(path: Path | None, lender: tuple[str, ...]) -> RuleSet:
    from tapshield.risk.engine import known_name
    from tapshield.risk.rules import EMPTY_RULES, load_rules

    if path is None:
        return EMPTY_RULES
    return load_rules(path, known=known_name(lender))


def _write_atomic(frame: pl.DataFrame, target: Path) -> None:
    if not target.parent.exists():
        raise UsageError(f"output folder does not exist: {target.parent}")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        frame.write_csv(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _exit_for(rejected: int, max_rejects: int) -> None:
    if rejected > max_rejects:
        err_console.print(f"[red]{rejected:,} rows rejected (more than --max-rejects "
                          f"{max_rejects})[/]")
        raise typer.Exit(EXIT_REJECTS)


LAYOUT_HELP = ("Input layout: auto (recognise the public card-fraud / payment-fraud files), "
               "contract, card-fraud, payment-fraud.")
DELAY_HELP = ("When labels taken from a public layout's label column become known, after "
              "the payment (a labels-contract file carries its own reported_at).")


@risk_app.command("train")
@friendly
def train_cmd(
    requests: Path = typer.Argument(..., metavar="REQUESTS", help="Requests file."),
    labels: Path = typer.Option(..., "--labels", help="Labels file (or the same file "
                                "for a public layout)."),
    out: Path = typer.Option(..., "--out", help="Model directory to write."),
    current: Path | None = typer.Option(None, "--current", help="Current model: the new one "
                                        "replaces it only if it beats it on the latest "
                                        "labelled weeks (else OUT gets the current one)."),
    budget_decline: float = typer.Option(0.001, "--budget-decline",
                                         help="Largest share of genuine payments declined."),
    budget_step_up: float = typer.Option(0.01, "--budget-step-up",
                                         help="Largest further share asked to step up."),
    valid_share: float = typer.Option(0.2, "--valid-share",
                                      help="Latest labelled share kept for calibration, "
                                      "thresholds and the gate."),
    layout: str = typer.Option("auto", "--layout", help=LAYOUT_HELP),
    label_delay: str = typer.Option("7d", "--label-delay", help=DELAY_HELP),
    save_state: bool = typer.Option(True, "--state/--no-state",
                                    help="Save the history's feature state with the model, "
                                    "so scoring later requests continues from it."),
    threads: int = typer.Option(1, "--threads",
                                help="LightGBM threads (more only on a quiet host)."),
    max_rejects: int = typer.Option(0, "--max-rejects", help="Rejected rows tolerated."),
) -> None:
    """Train the fraud model on a time split: LightGBM, calibrated, thresholds from the
    false-decline budget, gated against --current."""
    from tapshield.risk.model import RiskModel, TrainConfig, gate, train
    from tapshield.risk.thresholds import Budget

    if out.exists() and any(out.iterdir()) and not (out / "model.json").exists():
        raise UsageError(f"{out} exists and is not a model directory; refusing to write there")
    rej = out.parent / f"{out.name}.rejects.csv"
    req = _requests(requests, layout, max_rejects, rej)
    lab = _labels(labels, layout, label_delay, req.frame, requests,
                  out.parent / f"{out.name}.label-rejects.csv")
    try:
        budget = Budget(budget_decline, budget_step_up)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not 0.02 <= valid_share <= 0.5:
        raise UsageError("--valid-share must be between 0.02 and 0.5")
    cfg = TrainConfig(valid_share=valid_share, threads=max(1, threads))
    with console.status("replaying history and training"):
        result = train(req.frame, lab, lender=list(req.feature_columns), config=cfg,
                       budget=budget)
    report: dict[str, Any] = dict(result.report)
    report["layout"] = req.layout
    report["rejected_rows"] = req.rejects.height
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        promoted = True
        if current is not None:
            cur = RiskModel.load(current)
            g = gate(result, cur)
            report["gate"] = g.to_dict()
            promoted = g.promote
        if promoted:
            result.model.save(staging)
            has_entities = any(bool(t) for t in result.state.slots)
            if save_state and has_entities:
                result.state.snapshot(staging / "state.npz")
        else:
            for f in Path(current).iterdir() if current else []:
                if f.is_file():
                    shutil.copy2(f, staging / f.name)
            result.model.save(staging / "rejected-candidate")
        (staging / "train-report.json").write_text(json.dumps(report, indent=2,
                                                              default=str) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    t = result.model.thresholds
    table = Table(show_header=False, box=None)
    table.add_row("model", result.model.version + ("" if promoted else "  [red](not promoted)[/]"))
    c = report["counts"]
    table.add_row("requests / labelled / fraud", f"{c['requests']:,} / {c['labelled']:,} / "
                  f"{c['fraud']:,}")
    table.add_row("time split at", esc(report["cutoff"]))
    v = report["valid"]
    table.add_row("latest weeks: PR AUC", f"{v['average_precision']:.3f}")
    table.add_row("decline above", f"{t.decline:.4f} (genuine "
                  f"{t.measured['decline']['genuine_rate']:.3%}, fraud caught "
                  f"{t.measured['decline']['fraud_recall']:.1%})")
    table.add_row("step up above", f"{t.step_up:.4f}")
    if "gate" in report:
        table.add_row("gate", esc(report["gate"]["reason"]))
    table.add_row("written to", esc(out))
    console.print(table)
    _exit_for(req.rejects.height, max_rejects)


@risk_app.command("score")
@friendly
def score_cmd(
    requests: Path = typer.Argument(..., metavar="REQUESTS", help="Requests file."),
    model: Path = typer.Option(..., "--model", help="Model directory from `risk train`."),
    out: Path = typer.Option(..., "--out", help="Scores CSV to write."),
    labels: Path | None = typer.Option(None, "--labels", help="Labels used as feedback from "
                                       "their reported_at on."),
    rules: Path | None = typer.Option(None, "--rules", help="Rules YAML."),
    fresh: bool = typer.Option(False, "--fresh", help="Ignore the history saved with the "
                               "model (start from an empty state)."),
    detail: bool = typer.Option(False, "--detail", help="Also write model_decision, shadow, "
                                "rule_version and model_version."),
    layout: str = typer.Option("auto", "--layout", help=LAYOUT_HELP),
    label_delay: str = typer.Option("7d", "--label-delay", help=DELAY_HELP),
    max_rejects: int = typer.Option(0, "--max-rejects", help="Rejected rows tolerated."),
) -> None:
    """Score requests in event-time order: event_id,score,decision,reasons."""
    import polars as pl

    from tapshield.risk.engine import RiskEngine
    from tapshield.risk.features import FeatureState
    from tapshield.risk.model import STATE_FILE, RiskModel

    if out.exists() and requests.exists() and out.resolve() == requests.resolve():
        raise UsageError("--out must not overwrite the input file")
    m = RiskModel.load(model)
    req = _requests(requests, layout, max_rejects, out.parent / f"{out.name}.rejects.csv")
    missing = [c for c in m.lender if c not in req.frame.columns]
    if missing:
        raise UsageError(f"the model reads {', '.join(missing[:3])}, absent from {requests.name}")
    lab = _labels(labels, layout, label_delay, req.frame, requests,
                  out.parent / f"{out.name}.label-rejects.csv") if labels else None
    state = None
    frame = req.frame
    suffix = "\x1f#scored"
    clash: list[str] = []
    if not fresh and (model / STATE_FILE).exists():
        state = FeatureState.restore(model / STATE_FILE)
        index = state.event_index
        clash = [e for e in frame["event_id"].to_list() if e in index]
        if clash:
            # ids reused by another system (or the history scored again): the new
            # requests are scored as new ones under an internal name, written back
            # under their own id; their labels follow them
            err_console.print(f"[yellow]warning:[/] {len(clash):,} request ids are already in "
                              f"the model's history (e.g. {clash[0]!r}); scored as new "
                              "requests (--fresh ignores the history)", highlight=False)
            again = pl.col("event_id").is_in(clash)
            frame = frame.with_columns(pl.when(again).then(pl.col("event_id") + suffix)
                                       .otherwise(pl.col("event_id")).alias("event_id"))
            if lab is not None:
                lab = lab.with_columns(pl.when(again).then(pl.col("event_id") + suffix)
                                       .otherwise(pl.col("event_id")).alias("event_id"))
    engine = RiskEngine(m, _rules(rules, req.feature_columns), state=state)
    with console.status(f"scoring {frame.height:,} requests"):
        res = engine.decide_batch(frame, lab)
    if clash:
        res = res.with_columns(pl.col("event_id").str.strip_suffix(suffix))
    cols = ["event_id", "score", "decision", "reasons"]
    if detail:
        cols += ["model_decision", "shadow", "rule_version", "model_version"]
    _write_atomic(res.select(cols), out)
    table = Table(show_header=False, box=None)
    table.add_row("model", m.version)
    table.add_row("rules", engine.rules.version)
    for dec in ("approve", "step_up", "decline"):
        table.add_row(dec, f"{int((res['decision'] == dec).sum()):,}")
    table.add_row("written to", esc(out))
    console.print(table)
    _exit_for(req.rejects.height, max_rejects)


@risk_app.command("backtest")
@friendly
def backtest_cmd(
    requests: Path = typer.Argument(..., metavar="REQUESTS", help="Requests file (history)."),
    labels: Path = typer.Option(..., "--labels", help="Labels file."),
    model: Path | None = typer.Option(None, "--model", help="Current model directory."),
    rules: Path | None = typer.Option(None, "--rules", help="Current rules YAML."),
    candidate_model: Path | None = typer.Option(None, "--candidate-model",
                                                help="Candidate model (default: current)."),
    candidate_rules: Path | None = typer.Option(None, "--candidate-rules",
                                                help="Candidate rules (default: current)."),
    out: Path | None = typer.Option(None, "--out", help="Report JSON (the guard's "
                                    "expectation for this change)."),
    layout: str = typer.Option("auto", "--layout", help=LAYOUT_HELP),
    label_delay: str = typer.Option("7d", "--label-delay", help=DELAY_HELP),
    max_rejects: int = typer.Option(0, "--max-rejects", help="Rejected rows tolerated."),
) -> None:
    """Replay history under the current and a candidate configuration: genuine customers
    newly declined or stepped up, frauds caught, amounts saved."""
    from tapshield.risk.backtest import Side, backtest
    from tapshield.risk.model import RiskModel

    if candidate_model is None and candidate_rules is None:
        raise UsageError("give --candidate-model and/or --candidate-rules: the change to test")
    cur_m = RiskModel.load(model) if model else None
    cand_m = RiskModel.load(candidate_model) if candidate_model else cur_m
    target = out or Path.cwd() / "backtest.json"
    req = _requests(requests, layout, max_rejects, target.parent / f"{target.name}.rejects.csv")
    lab = _labels(labels, layout, label_delay, req.frame, requests,
                  target.parent / f"{target.name}.label-rejects.csv")
    cur_r = _rules(rules, req.feature_columns)
    cand_r = _rules(candidate_rules, req.feature_columns) if candidate_rules else cur_r
    with console.status("replaying history twice"):
        report = backtest(req.frame, lab, Side(cur_m, cur_r), Side(cand_m, cand_r))
    target.write_text(json.dumps(report, indent=2) + "\n")
    table = Table(title=f"{report['current_version']} -> {report['version']}", box=None)
    table.add_column("")
    table.add_column("current", justify="right")
    table.add_column("candidate", justify="right")
    a, b = report["current"], report["candidate"]
    for key in ("decline", "step_up", "genuine_declined", "genuine_stepped_up",
                "fraud_declined", "fraud_amount_declined"):
        table.add_row(key, f"{a[key]:,}" if isinstance(a[key], int) else esc(a[key]),
                      f"{b[key]:,}" if isinstance(b[key], int) else str(b[key]))
    console.print(table)
    ch = report["changes"]
    console.print(f"genuine newly declined {ch['genuine_newly_declined']:,}, newly stepped up "
                  f"{ch['genuine_newly_stepped_up']:,}; frauds newly declined "
                  f"{ch['fraud_newly_declined']:,}, no longer declined "
                  f"{ch['fraud_no_longer_declined']:,}; amount saved {ch['amount_saved']}")
    console.print(f"report: {esc(target)}", highlight=False)
    _exit_for(req.rejects.height, max_rejects)
