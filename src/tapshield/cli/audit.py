"""``tapshield audit``: check the transparency log, prove entries, sign and keep heads.

For an auditor or a partner: ``verify`` re-checks the whole log offline
(exit 0 intact, 1 tampered, naming the first bad entry); ``proof`` and
``consistency`` print RFC 9162 proofs as JSON and ``check-proof`` verifies
one without the database; ``head`` shows (or signs) the newest tree head and
appends it to a witness file; ``keygen`` makes the log's Ed25519 key pair.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from tapshield.cli._app import EXIT_OK, UsageError, app, console, err_console, esc, friendly

if TYPE_CHECKING:
    from tapshield.audit.checkpoint import Verifier
    from tapshield.audit.log import AuditLog
    from tapshield.storage.audit import SqlAuditStore

EXIT_TAMPERED = 1

audit_app = typer.Typer(
    name="audit", no_args_is_help=True, add_completion=False,
    help="The tamper-evident record: verify it, prove entries, sign and keep tree heads.")
app.add_typer(audit_app, name="audit")

_DB = typer.Option(None, "--db", help="Database URL (default: $TAPSHIELD_DB_URL, else "
                   "./tapshield.db).")
_KEYS = typer.Option(None, "--key", "-k", help="A verifier key (name+hash+key) or a file of "
                     "them; repeatable (default: $TAPSHIELD_AUDIT_VERIFIER, else the public "
                     "half of the signing key).")


def _open(db: str | None) -> SqlAuditStore:
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from tapshield.storage import Store, default_url
    from tapshield.storage.audit import SqlAuditStore

    url = db or default_url()
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        raise UsageError(f"no database at {url[len('sqlite:///'):]}")
    try:
        store = Store(url, migrate=False)
        if not inspect(store.engine).has_table("audit_log"):
            raise UsageError("this database has no audit log (audit_log table)")
    except SQLAlchemyError as exc:
        raise UsageError(f"cannot open the database: {exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0]}") from None
    return SqlAuditStore(store.engine)


def _verifiers(keys: list[str] | None, signer_key: Path | None = None) -> list[Verifier]:
    from tapshield.audit.witness import env_verifiers, load_signer, parse_verifiers

    try:
        if keys:
            return parse_verifiers(keys)
        found = env_verifiers()
        if found:
            return found
        signer = load_signer(signer_key)
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    return [signer.verifier()] if signer is not None else []


def _log(db: str | None, signer_key: Path | None = None, origin: str | None = None) -> AuditLog:
    from tapshield.audit.log import AuditLog
    from tapshield.audit.witness import load_signer

    try:
        signer = load_signer(signer_key)
    except (ValueError, OSError) as exc:
        raise UsageError(f"signing key: {exc}") from None
    return AuditLog(_open(db), signer=signer, origin=origin)


@audit_app.command("verify")
@friendly
def verify_cmd(
    db: str | None = _DB,
    keys: list[str] | None = _KEYS,
    witness: list[Path] | None = typer.Option(
        None, "--witness", "-w", help="A witness file of signed heads kept outside the "
        "database (by a partner, an auditor); repeatable."),
    origin: str | None = typer.Option(None, "--origin", help="The log's name (default: the "
                                      "verifier key's name)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check every entry, stored hash and signed head; exit 1 naming the first bad entry."""
    from tapshield.audit.verify import verify
    from tapshield.audit.witness import read_witness

    verifiers = _verifiers(keys)
    notes: list[tuple[str, str]] = []
    for w in witness or []:
        try:
            notes += read_witness(w)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    name = origin or (verifiers[0].name if verifiers else None)
    if name is None:
        raise UsageError("no verifier key: pass --key (the log's public key) or set "
                         "TAPSHIELD_AUDIT_VERIFIER; a verifier never takes keys from the "
                         "database it checks")
    store = _open(db)
    with console.status("verifying the audit log"):
        report = verify(store, verifiers, origin=name, witness=notes)
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
    else:
        _print_report(report)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_TAMPERED)


def _print_report(report: Any) -> None:
    for w in report.warnings:
        err_console.print(f"[yellow]warning:[/] {esc(w)}", highlight=False)
    signed = report.newest_head
    line = (f"{report.rows:,} entries, {report.heads} signed heads in the database, "
            f"{report.witness_heads} from witnesses; {report.seconds:.2f} s")
    if report.ok:
        console.print(f"[bold green]OK[/] audit log intact: {line}", highlight=False)
        if signed is not None and report.unsigned > 0:
            console.print(f"{report.unsigned:,} entries after the newest signed head "
                          f"(size {signed:,}) are not signed yet", highlight=False)
        return
    fb = report.first_bad
    where = f"#{fb.entry}" if fb is not None and fb.entry is not None else "-"
    console.print(f"[bold red]TAMPERED[/] first bad entry: {where}", highlight=False)
    for f in report.findings:
        console.print(f"  - {esc(f.message)}", highlight=False, soft_wrap=True)
    console.print(line, highlight=False)


@audit_app.command("head")
@friendly
def head_cmd(
    db: str | None = _DB,
    sign: bool = typer.Option(False, "--sign", help="Sign a head for the current size now."),
    signer_key: Path | None = typer.Option(
        None, "--signer-key", help="The signing key file (default: $TAPSHIELD_AUDIT_SIGNER or "
        "$TAPSHIELD_AUDIT_SIGNER_FILE)."),
    witness: Path | None = typer.Option(
        None, "--witness", "-w", help="Append the head to this witness file."),
) -> None:
    """Print the newest signed tree head (a C2SP checkpoint)."""
    from tapshield.audit.witness import append_witness

    log = _log(db, signer_key)
    if sign:
        if log.signer is None:
            raise UsageError("signing needs the key: --signer-key FILE or "
                             "$TAPSHIELD_AUDIT_SIGNER_FILE")
        log.origin = log.signer.name
        note = log.sign_head(force=False)
    head = log.latest_head()
    if head is None:
        raise UsageError("no tree head has been signed yet (tapshield audit head --sign)")
    note = head.note
    console.print(note, end="", highlight=False, markup=False, soft_wrap=True)
    if witness is not None and append_witness(witness, note):
        err_console.print(f"appended to {esc(witness)}", highlight=False)


@audit_app.command("proof")
@friendly
def proof_cmd(
    seq: int = typer.Argument(..., help="The entry (its seq, the leaf index)."),
    db: str | None = _DB,
    size: int | None = typer.Option(None, "--size", help="Tree size to prove against "
                                    "(default: the newest signed head)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the proof here."),
) -> None:
    """Print an inclusion proof for one entry, with the signed head it leads to."""
    log = _log(db)
    try:
        proof = log.inclusion_proof(seq, size)
    except IndexError as exc:
        raise UsageError(str(exc)) from None
    text = json.dumps(proof.to_dict(), indent=2, ensure_ascii=False) + "\n"
    if out is not None:
        out.write_text(text, encoding="utf-8")
    else:
        console.print(text, end="", highlight=False, markup=False, soft_wrap=True)


@audit_app.command("consistency")
@friendly
def consistency_cmd(
    first: int = typer.Argument(..., help="The older tree size (e.g. a head a partner holds)."),
    second: int | None = typer.Argument(None, help="The newer size (default: newest head)."),
    db: str | None = _DB,
) -> None:
    """Print a consistency proof: the tree of SECOND entries extends the tree of FIRST."""
    import base64

    log = _log(db)
    head = log.latest_head()
    to = second if second is not None else (head.size if head is not None else log.size())
    try:
        path = log.consistency_proof(first, to)
    except IndexError as exc:
        raise UsageError(str(exc)) from None
    h = log.head_for(to)
    doc = {"first": first, "second": to,
           "consistency_path": [base64.b64encode(x).decode() for x in path],
           "second_checkpoint": h.note if h is not None else None}
    console.print(json.dumps(doc, indent=2), highlight=False, markup=False, soft_wrap=True)


@audit_app.command("check-proof")
@friendly
def check_proof_cmd(
    proof: Path = typer.Argument(..., help="A proof written by `tapshield audit proof`."),
    keys: list[str] | None = _KEYS,
) -> None:
    """Verify an inclusion proof offline, without the database (what a partner runs)."""
    import base64

    from tapshield.audit import merkle
    from tapshield.audit.checkpoint import NoteError, open_note
    from tapshield.audit.log import Entry
    from tapshield.timeutil import parse_rfc3339

    verifiers = _verifiers(keys)
    if not verifiers:
        raise UsageError("pass the log's verifier key with --key")
    try:
        doc = json.loads(proof.read_text(encoding="utf-8"))
        e = doc["entry"]
        entry = Entry(int(e["seq"]), parse_rfc3339(e["ts"]), e["kind"], e["actor"],
                      e["subject"], e["payload"])
        path = [base64.b64decode(x) for x in doc["inclusion_path"]]
        size = int(doc["tree_size"])
        note = doc["checkpoint"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{proof.name}: not an inclusion proof ({exc})") from None
    if not note:
        raise UsageError("the proof carries no signed head to check against")
    try:
        cp, _ = open_note(note, verifiers)
    except NoteError as exc:
        console.print(f"[bold red]INVALID[/] {esc(exc)}", highlight=False)
        raise typer.Exit(EXIT_TAMPERED) from None
    ok = cp.size == size and merkle.verify_inclusion(
        entry.seq, size, entry.leaf_hash(), path, cp.root)
    if ok:
        console.print(f"[bold green]OK[/] entry #{entry.seq} ({esc(entry.kind)}, "
                      f"{esc(entry.subject)}) is "
                      f"in the log {esc(cp.origin)} of {size:,} entries signed "
                      f"{cp.timestamp.isoformat()}", highlight=False)
        raise typer.Exit(EXIT_OK)
    console.print(f"[bold red]INVALID[/] entry #{entry.seq} is not proven by this head",
                  highlight=False)
    raise typer.Exit(EXIT_TAMPERED)


@audit_app.command("keygen")
@friendly
def keygen_cmd(
    name: str = typer.Argument(..., help="The log's name, e.g. bank.example/tapshield-audit "
                               "(no spaces)."),
    out: Path = typer.Option(Path("keys"), "--out", "-o", help="Directory for audit.skey "
                             "(mode 0600) and audit.vkey."),
) -> None:
    """Make the log's Ed25519 signing key; prints the verifier key to give partners."""
    from tapshield.audit.witness import write_keypair

    try:
        skey, _vkey, signer = write_keypair(out, name)
    except (ValueError, FileExistsError) as exc:
        raise UsageError(str(exc)) from None
    err_console.print(f"signing key written to {esc(skey)} (keep it out of the database and "
                      "backups of it; see docs/trust.md)", highlight=False)
    console.print(signer.verifier().vkey(), highlight=False, markup=False, soft_wrap=True)


@audit_app.command("show")
@friendly
def show_cmd(
    db: str | None = _DB,
    last: int = typer.Option(20, "--last", "-n", min=1, help="How many entries."),
    subject: str | None = typer.Option(None, "--subject", help="Only entries about this."),
) -> None:
    """Print the newest entries (JSON lines)."""
    store = _open(db)
    size = store.size()
    shown = 0
    lines: list[str] = []
    for e in store.entries(max(size - (last if subject is None else size), 0)):
        if subject is not None and e.subject != subject:
            continue
        lines.append(json.dumps(e.to_dict(), ensure_ascii=False))
        shown += 1
    for ln in lines[-last:]:
        console.print(ln, highlight=False, markup=False, soft_wrap=True)
