"""Read payment events from CSV, JSONL (plain or gzip) and Parquet in bounded chunks.

Every format goes through the same two validation stages
(:mod:`tapshield.events.validate`); a reader yields canonical micro-batches and
hands rejected rows, with their reasons, to a reject sink. Memory is bounded by
``chunk_rows`` whatever the file size: a few chunks are in flight at a time.

Clean CSV and Parquet files take a fast path. The reader cuts the file into
chunks itself (Parquet: runs of row groups; CSV: byte ranges ending on a
record boundary) and parses and validates a few chunks at a time in worker
threads (Polars and the compiled kernels release the GIL), while the calling
thread reads ahead and checks duplicates in file order. A CSV chunk that
Polars cannot split (a record with more fields than the header, bytes that are
not UTF-8) hands the rest of the file, from that chunk on, to Python's ``csv``
module, so the broken records can be named and rejected one by one rather
than failing the whole file. Gzipped CSV is read by the ``csv`` module.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, BinaryIO, TypeVar, cast

import polars as pl
import pyarrow.parquet as pq

from tapshield.errors import ContractError, RowError
from tapshield.events.csvsplit import (
    PIECE_BYTES,
    Piece,
    header_end,
    probed_pieces,
    quoted_pieces,
)
from tapshield.events.idindex import EventIdIndex
from tapshield.events.schema import REQUIRED, WIRE_NAMES, empty_events
from tapshield.events.validate import (
    ROW,
    ValidationResult,
    finish,
    parse,
    structural_rejects,
)

DEFAULT_CHUNK_ROWS = 500_000
MAX_SHOWN_ERRORS = 20
WORKERS = max(2, min(4, os.cpu_count() or 1))
"""Chunks parsed and validated at the same time (each in its own thread)."""

R = TypeVar("R")


class Format(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    PARQUET = "parquet"


def detect_format(path: Path | str) -> tuple[Format, bool]:
    """``(format, gzipped)`` from the file name."""
    name = Path(path).name.lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    if name.endswith(".csv"):
        return Format.CSV, gz
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return Format.JSONL, gz
    if name.endswith((".parquet", ".pq")) and not gz:
        return Format.PARQUET, False
    raise ContractError(
        f"{Path(path).name}: unknown file type; use .csv, .csv.gz, .jsonl, .jsonl.gz or .parquet"
    )


@dataclass(slots=True)
class ReadStats:
    """What happened to every row of one input: nothing unaccounted for."""

    path: str
    format: str
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    batches: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    slow_path: bool = False
    errors: list[RowError] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "format": self.format,
            "rows": self.rows,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "ignored_columns": self.ignored_columns,
        }


RejectSink = Callable[[pl.DataFrame], None]


class EventReader:
    """Validated canonical batches from one events file.

    Iterate it once; afterwards :attr:`stats` says how many rows were read,
    accepted and rejected. Duplicate ``event_id`` s are detected across the
    whole file.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        on_reject: RejectSink | None = None,
        index: EventIdIndex | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise ContractError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise ContractError(f"{self.path}: is a directory, not an events file")
        self.format, self.gzipped = detect_format(self.path)
        self.chunk_rows = max(1, int(chunk_rows))
        self.on_reject = on_reject
        self.index = index if index is not None else EventIdIndex()
        self.stats = ReadStats(str(self.path), self.format.value + (".gz" if self.gzipped else ""))

    # -- public -------------------------------------------------------------

    def __iter__(self) -> Iterator[pl.DataFrame]:
        for result in self._results():
            self._account(result)
            if result.valid.height:
                yield result.valid

    def read_all(self) -> pl.DataFrame:
        """Every accepted row in one frame (small files, tests)."""
        frames = list(self)
        return pl.concat(frames) if frames else empty_events()

    # -- internals ----------------------------------------------------------

    def _account(self, result: ValidationResult) -> None:
        n_ok, n_bad = result.valid.height, result.rejects.height
        self.stats.rows += n_ok + n_bad
        self.stats.accepted += n_ok
        self.stats.rejected += n_bad
        self.stats.batches += 1
        if n_bad:
            room = MAX_SHOWN_ERRORS - len(self.stats.errors)
            if room > 0:
                self.stats.errors.extend(result.errors(limit=room)[:room])
            if self.on_reject is not None:
                self.on_reject(result.rejects)

    def _results(self) -> Iterator[ValidationResult]:
        if self.format is Format.PARQUET:
            yield from self._parquet()
        elif self.format is Format.JSONL:
            yield from self._jsonl()
        elif self.gzipped:
            yield from self._csv_python()
        else:
            yield from self._csv_fast()

    def _note_columns(self, names: list[str]) -> list[str]:
        seen: set[str] = set()
        dupes = {n for n in names if n in seen or seen.add(n)}  # type: ignore[func-returns-value]
        if dupes:
            raise ContractError(f"{self.path.name}: duplicate column(s) {', '.join(sorted(dupes))}")
        missing = [c for c in REQUIRED if c not in names]
        if missing:
            plural = "s" if len(missing) > 1 else ""
            raise ContractError(
                f"{self.path.name}: missing required column{plural} {', '.join(missing)}"
            )
        self.stats.ignored_columns = [n for n in names if n not in WIRE_NAMES]
        return [n for n in names if n in WIRE_NAMES]

    def _parquet(self) -> Iterator[ValidationResult]:
        try:
            lf = pl.scan_parquet(self.path)
            schema = lf.collect_schema()
            groups = [
                meta.row_group(i).num_rows
                for meta in [pq.ParquetFile(self.path).metadata]
                for i in range(meta.num_row_groups)
            ]
        except (OSError, pl.exceptions.PolarsError, ValueError) as exc:
            raise ContractError(f"{self.path.name}: not a readable Parquet file ({exc})") from exc
        cols = self._note_columns(schema.names())
        types = {c: schema[c] for c in cols}
        lf = lf.select(cols)

        def task(offset: int, rows: int) -> Callable[[], pl.DataFrame]:
            def run() -> pl.DataFrame:
                batch = lf.slice(offset, rows).collect()
                return parse(batch.with_row_index(ROW, offset=offset + 1), types)

            return run

        tasks = (task(offset, rows) for offset, rows in _parquet_chunks(groups, self.chunk_rows))
        try:
            for parsed in _ahead(tasks):
                yield finish(parsed, self.index)
        except pl.exceptions.PolarsError as exc:
            raise ContractError(f"{self.path.name}: unreadable Parquet data ({exc})") from exc

    def _csv_header(self) -> list[str]:
        try:
            with _open_text(self.path, self.gzipped) as fh:
                header = next(csv.reader(fh), None)
        except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as exc:
            raise ContractError(f"{self.path.name}: unreadable CSV header ({exc})") from exc
        if not header:
            raise ContractError(f"{self.path.name}: empty file (no CSV header)")
        return [h.strip() for h in header]

    def _csv_fast(self) -> Iterator[ValidationResult]:
        header = self._csv_header()
        cols = self._note_columns(header)
        schema = dict.fromkeys(header, pl.String())
        types = dict.fromkeys(cols, pl.String())
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise ContractError(f"{self.path.name}: unreadable CSV ({exc})") from exc

        def task(pieces: list[Piece]) -> Callable[[], _CsvChunk]:
            def run() -> _CsvChunk:
                frames = []
                quoted = False
                for piece in pieces:
                    data = piece.load(fd)
                    if b'"' in data:
                        if data.count(b'"') % 2:
                            return _CsvChunk(pieces[0].offset, None, misaligned=True)
                        quoted = True
                    try:
                        # Every field is read (no projection), which is what makes
                        # Polars notice a record with more fields than the header;
                        # a short first record is padded like any other.
                        frames.append(
                            pl.read_csv(
                                data,
                                has_header=False,
                                schema=schema,
                                encoding="utf8",
                                missing_columns="insert",
                            )
                        )
                    except pl.exceptions.PolarsError:
                        # A record Polars cannot split: the exact reader takes over.
                        return _CsvChunk(pieces[0].offset, None)
                    del data
                batch = frames[0] if len(frames) == 1 else pl.concat(frames, rechunk=False)
                # Without a single quote no field can be the empty string: an
                # empty field is null, which the column's null count tells.
                parsed = parse(
                    batch.select(cols).with_row_index(ROW, offset=1), types, blank_free=not quoted
                )
                return _CsvChunk(pieces[0].offset, parsed)

            return run

        results: Generator[_CsvChunk, None, None] | None = None
        try:
            found = header_end(fd)
            if found is None:
                return
            offset, per_record = found
            size = os.fstat(fd).st_size
            # Tasks of about chunk_rows records, read in pieces of at most 16 MB.
            target = max(1, int(self.chunk_rows * per_record * 0.95))
            per_task = -(-target // PIECE_BYTES)
            piece_bytes = -(-target // per_task)
            pieces: Iterator[Piece] = probed_pieces(fd, offset, size, piece_bytes)
            done = 0
            while True:
                results = _ahead(task(group) for group in _groups(pieces, per_task))
                for chunk in results:
                    if chunk.misaligned:
                        # A probe cut inside a quoted field (quoted newlines): cut
                        # the rest of the file counting quotes.
                        results.close()
                        pieces = quoted_pieces(fd, chunk.offset, piece_bytes)
                        break
                    if chunk.parsed is None:
                        results.close()
                        self.stats.slow_path = True
                        yield from self._csv_python(offset=chunk.offset, first_row=done + 1)
                        return
                    parsed = chunk.parsed.with_columns(pl.col(ROW).cast(pl.Int64) + done)
                    done += parsed.height
                    for batch in parsed.iter_slices(self.chunk_rows):
                        yield finish(batch, self.index)
                else:
                    return
        except OSError as exc:
            raise ContractError(f"{self.path.name}: unreadable CSV ({exc})") from exc
        finally:
            # Workers still reading must be done before the descriptor goes
            # (a consumer may stop early): closing the pipeline waits for them.
            if results is not None:
                results.close()
            os.close(fd)

    def _csv_python(
        self, offset: int | None = None, first_row: int = 1
    ) -> Iterator[ValidationResult]:
        """The exact reader: from the start (``offset=None``) or from a record boundary."""
        header = self._csv_header()
        cols = self._note_columns(header)
        positions = [header.index(c) for c in cols]
        width = len(header)
        try:
            with _open_text(self.path, self.gzipped, offset) as fh:
                reader = csv.reader(fh)
                if offset is None:
                    next(reader, None)
                columns: list[list[str | None]] = [[] for _ in cols]
                rows: list[int] = []
                broken: list[tuple[int, str, str]] = []
                for n, rec in enumerate(reader, start=first_row):
                    if len(rec) > width:
                        broken.append((n, "field_count", ",".join(rec)))
                    elif any(_has_surrogate(v) for v in rec):
                        broken.append((n, "encoding", _printable(",".join(rec))))
                    else:
                        rows.append(n)
                        for out, pos in zip(columns, positions, strict=True):
                            out.append(rec[pos] if pos < len(rec) and rec[pos] != "" else None)
                    if len(rows) + len(broken) >= self.chunk_rows:
                        yield self._python_batch(rows, cols, columns, broken)
                        columns = [[] for _ in cols]
                        rows, broken = [], []
                if rows or broken:
                    yield self._python_batch(rows, cols, columns, broken)
        except (OSError, EOFError, gzip.BadGzipFile, csv.Error) as exc:
            raise ContractError(f"{self.path.name}: unreadable CSV ({exc})") from exc

    def _python_batch(
        self,
        rows: list[int],
        cols: list[str],
        columns: list[list[str | None]],
        broken: list[tuple[int, str, str]],
    ) -> ValidationResult:
        frame = pl.DataFrame(
            {ROW: rows, **dict(zip(cols, columns, strict=True))},
            schema={ROW: pl.Int64(), **dict.fromkeys(cols, pl.String())},
        )
        result = finish(parse(frame), self.index)
        if broken:
            result.rejects = pl.concat([result.rejects, structural_rejects(broken)]).sort("row")
        return result

    def _jsonl(self) -> Iterator[ValidationResult]:
        schema = dict.fromkeys(WIRE_NAMES, pl.String())
        checked = False
        try:
            with _open_binary(self.path, self.gzipped) as fh:
                lines: list[bytes] = []
                numbers: list[int] = []
                for n, line in enumerate(fh, start=1):
                    stripped = line.strip()
                    if not stripped:
                        continue
                    lines.append(stripped)
                    numbers.append(n)
                    if len(lines) >= self.chunk_rows:
                        frame, broken = _parse_json_lines(lines, numbers, schema)
                        if not checked:
                            self._check_json_columns(frame)
                            checked = True
                        yield self._json_result(frame, broken)
                        lines, numbers = [], []
                if lines or not checked:
                    frame, broken = _parse_json_lines(lines, numbers, schema)
                    if not checked and frame.height:
                        self._check_json_columns(frame)
                    yield self._json_result(frame, broken)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise ContractError(f"{self.path.name}: unreadable JSONL ({exc})") from exc

    def _check_json_columns(self, frame: pl.DataFrame) -> None:
        """A required key absent from every record of the first chunk is a missing column."""
        absent = [c for c in REQUIRED if frame[c].null_count() == frame.height]
        if absent and frame.height:
            plural = "s" if len(absent) > 1 else ""
            raise ContractError(
                f"{self.path.name}: missing required column{plural} {', '.join(absent)}"
            )

    def _json_result(
        self, frame: pl.DataFrame, broken: list[tuple[int, str, str]]
    ) -> ValidationResult:
        result = finish(parse(frame), self.index)
        if broken:
            result.rejects = pl.concat([result.rejects, structural_rejects(broken)]).sort("row")
        return result


def _parse_json_lines(
    lines: list[bytes], numbers: list[int], schema: Mapping[str, pl.DataType]
) -> tuple[pl.DataFrame, list[tuple[int, str, str]]]:
    broken: list[tuple[int, str, str]] = []
    good_lines, good_numbers = lines, numbers
    try:
        frame = _ndjson(good_lines, schema)
    except (pl.exceptions.PolarsError, ValueError):
        good_lines, good_numbers = [], []
        for n, line in zip(numbers, lines, strict=True):
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                broken.append((n, "json_syntax", _printable(line.decode("utf-8", "replace"))))
                continue
            if not isinstance(obj, dict):
                broken.append((n, "json_syntax", _printable(line.decode("utf-8", "replace"))))
                continue
            good_lines.append(json.dumps(_flatten_scalars(obj)).encode())
            good_numbers.append(n)
        frame = _ndjson(good_lines, schema)
    frame = frame.with_columns(pl.Series(ROW, good_numbers, dtype=pl.Int64)).select(
        [ROW, *schema]
    )
    return frame, broken


def _ndjson(lines: list[bytes], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    if not lines:
        return pl.DataFrame(schema=schema)
    return pl.read_ndjson(io.BytesIO(b"\n".join(lines)), schema=schema)


def _flatten_scalars(obj: dict[str, object]) -> dict[str, object]:
    """Nested values in a contract column are kept as their JSON text (then rejected)."""
    return {
        k: json.dumps(v) if isinstance(v, dict | list) else v
        for k, v in obj.items()
        if k in WIRE_NAMES
    }


def _open_text(path: Path, gz: bool, offset: int | None = None) -> IO[str]:
    """Text for the ``csv`` module: undecodable bytes kept (as surrogates) to be named."""
    raw = cast(IO[bytes], gzip.open(path, "rb") if gz else open(path, "rb"))
    if offset is not None:
        raw.seek(offset)
    return io.TextIOWrapper(
        raw,
        encoding="utf-8-sig" if offset is None else "utf-8",
        errors="surrogateescape",
        newline="",
    )


def _ahead(
    tasks: Iterable[Callable[[], R]], depth: int = WORKERS
) -> Generator[R, None, None]:
    """The results of ``tasks`` in order, ``depth`` of them computed at a time in threads.

    The next task is started before a result is handed out, so the caller's
    own work on it (duplicate checks, the consumer) overlaps with the
    workers'. At most ``depth`` results exist besides the one handed out:
    memory stays bounded. Closing the generator cancels what has not started.
    """
    it = iter(tasks)
    with ThreadPoolExecutor(max_workers=depth, thread_name_prefix="tapshield-read") as pool:
        pending: deque[Future[R]] = deque()
        try:
            for task in it:
                pending.append(pool.submit(task))
                if len(pending) >= depth:
                    break
            while pending:
                result = pending.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(nxt))
                yield result
        finally:
            for f in pending:
                f.cancel()


def _parquet_chunks(groups: list[int], chunk_rows: int) -> Iterator[tuple[int, int]]:
    """``(offset, rows)`` ranges: whole row groups up to ``chunk_rows``, big groups split."""
    offset = start = 0
    for size in groups:
        if size > chunk_rows:
            if offset > start:
                yield start, offset - start
            parts = -(-size // chunk_rows)
            for k in range(parts):
                lo, hi = size * k // parts, size * (k + 1) // parts
                yield offset + lo, hi - lo
            offset += size
            start = offset
            continue
        if offset + size - start > chunk_rows:
            yield start, offset - start
            start = offset
        offset += size
    if offset > start:
        yield start, offset - start


@dataclass(slots=True)
class _CsvChunk:
    """What a worker made of a run of CSV pieces starting at byte ``offset``."""

    offset: int
    parsed: pl.DataFrame | None
    """``None``: Polars could not split a record (or the cut was misaligned)."""
    misaligned: bool = False


def _groups(pieces: Iterable[Piece], size: int) -> Iterator[list[Piece]]:
    group: list[Piece] = []
    for piece in pieces:
        group.append(piece)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def _open_binary(path: Path, gz: bool) -> BinaryIO:
    return cast(BinaryIO, gzip.open(path, "rb") if gz else open(path, "rb"))


def _has_surrogate(s: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in s)


def _printable(s: str) -> str:
    return s.encode("utf-8", "replace").decode("utf-8", "replace")


def read_events(path: Path | str, **kwargs: object) -> pl.DataFrame:
    """Read and validate a whole (small) file; raises if any row is rejected.

    Convenience for tests and notebooks; pipelines use :class:`EventReader`.
    """
    reader = EventReader(path, **kwargs)  # type: ignore[arg-type]
    frame = reader.read_all()
    if reader.stats.rejected:
        shown = "; ".join(str(e) for e in reader.stats.errors[:3])
        raise ContractError(f"{reader.stats.rejected} rejected row(s): {shown}")
    return frame
