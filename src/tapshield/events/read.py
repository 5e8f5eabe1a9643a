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

import bisect
import gzip
import io
import json
import os
import re
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, TypeVar, cast

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tapshield.csvgrammar import (
    OTHER_BOMS,
    PIECE_BYTES,
    REC_ENCODING,
    REC_FIELD_COUNT,
    REC_QUOTE,
    SAMPLE_BYTES,
    STATUS_RULES,
    UTF8_BOM,
    Tokens,
    header_fields,
    line_end_after,
    line_end_before,
    line_ends,
    polars_safe,
    record_extent,
    scan_records,
)
from tapshield.errors import ContractError, RowError
from tapshield.events.idindex import EventIdIndex
from tapshield.events.schema import REQUIRED, WIRE_NAMES, empty_events
from tapshield.events.validate import (
    ROW,
    ValidationResult,
    _flag,
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
        else:
            yield from self._csv()

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

    def _csv_header(self, source: _CsvSource) -> tuple[list[str], np.ndarray, list[str]]:
        """``(header, column map for the tokenizer, contract columns kept)``."""
        header = source.header()
        cols = self._note_columns(header)
        colmap = np.array([cols.index(h) if h in cols else -1 for h in header], dtype=np.int64)
        return header, colmap, cols

    def _csv(self) -> Iterator[ValidationResult]:
        """Every CSV: cut into runs of whole records, tokenized and validated in workers."""
        try:
            source = _CsvSource(self.path, self.gzipped)
        except OSError as exc:
            raise ContractError(f"{self.path.name}: unreadable CSV ({exc})") from exc
        results: Generator[_CsvChunk, None, None] | None = None
        try:
            header, colmap, cols = self._csv_header(source)
            types = dict.fromkeys(cols, pl.String())
            schema: dict[str, pl.DataType] = dict.fromkeys(header, pl.String())
            flags = _structure_flags(header)

            def task(pieces: list[_PieceSpec]) -> Callable[[], _CsvChunk]:
                def run() -> _CsvChunk:
                    frames = []
                    records = _Records(source, colmap)
                    blank_free = True
                    start = pieces[0][0]
                    resume = -1
                    for spec in pieces:
                        offset, _, final, _ = spec
                        data = source.load(spec)
                        # A piece without a quote or a CR has the trivial grammar:
                        # Polars' vectorised splitter reads it (the tokenizer's
                        # results are the same, at a higher cost).
                        plain = None
                        simple = b'"' not in data and b"\r" not in data
                        if simple or polars_safe(np.frombuffer(data, np.uint8)):
                            plain = _plain_frame(data, schema, cols, simple)
                        if plain is not None:
                            records.add(spec, plain.height, simple=simple)
                            if plain.height:
                                frames.append(plain)
                            blank_free = blank_free and simple
                            continue
                        tokens = Tokens(data, colmap, len(cols), final)
                        if tokens.rows:
                            frames.append(_token_frame(tokens, cols, flags))
                            n = tokens.rows
                            records.add(
                                spec, n, tokens.rec_start[:n].copy(), tokens.rec_end[:n].copy()
                            )
                        if tokens.resume < len(data):
                            resume = offset + tokens.resume
                            break
                    if not frames:
                        return _CsvChunk(start, None, resume, records)
                    batch = frames[0] if len(frames) == 1 else pl.concat(
                        frames, rechunk=False,
                        how="vertical" if len({len(f.columns) for f in frames}) == 1
                        else "diagonal",
                    )
                    # The tokenizer gives "no value" (null) for every empty field, and
                    # so does Polars where there is no quote (only `""` is empty text).
                    # Rows are numbered in the reader's thread, and only when one
                    # is rejected (a clean batch needs no numbers).
                    parsed = parse(batch, types, blank_free=blank_free)
                    return _CsvChunk(start, parsed, resume, records)

                return run

            done = 0
            for run in source.runs(self.chunk_rows):
                results = _ahead(task(group) for group in run)
                for chunk in results:
                    if chunk.parsed is not None:
                        parsed = chunk.parsed
                        first = done + 1
                        for batch in parsed.iter_slices(self.chunk_rows):
                            result = finish(batch, self.index, first_row=first)
                            first += batch.height
                            if result.rejects.height and chunk.records is not None:
                                # the records' own bytes, only for the rows rejected
                                local = (result.rejects["row"] - done - 1).to_numpy()
                                result.rejects = result.rejects.with_columns(
                                    pl.Series("raw", chunk.records.raw(local), dtype=pl.Binary)
                                )
                            yield result
                        done += parsed.height
                    if chunk.resume >= 0:
                        # A guessed cut fell inside a quoted field: go on from the
                        # first record the run did not finish.
                        source.restart(chunk.resume, chunk.offset)
                        break
                results.close()
                results = None
        except OSError as exc:
            raise ContractError(f"{self.path.name}: unreadable CSV ({exc})") from exc
        finally:
            # Workers still reading must be done before the source closes (a
            # consumer may stop early): closing the pipeline waits for them.
            if results is not None:
                results.close()
            source.close()

    def _jsonl(self) -> Iterator[ValidationResult]:
        schema = dict.fromkeys(WIRE_NAMES, pl.String())
        checked = False
        try:
            with _open_binary(self.path, self.gzipped) as fh:
                lines: list[bytes] = []
                numbers: list[int] = []
                for n, line in enumerate(_lines(fh), start=1):
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
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
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
        self, frame: pl.DataFrame, broken: list[tuple[int, str, bytes]]
    ) -> ValidationResult:
        return _json_validated(frame, broken, self.index)


def _json_validated(
    frame: pl.DataFrame, broken: list[tuple[int, str, bytes]], index: EventIdIndex
) -> ValidationResult:
    result = finish(parse(frame, dict.fromkeys(WIRE_NAMES, pl.String())), index)
    if broken:
        result.rejects = pl.concat([result.rejects, structural_rejects(broken)]).sort("row")
    return result


def validate_json_lines(
    lines: list[bytes], numbers: list[int], index: EventIdIndex
) -> ValidationResult:
    """JSONL records that arrive a few at a time (a live stream), validated exactly as
    an events file's: the same parse, rules and rejects, duplicates checked against
    ``index`` (keep one index for the whole stream). ``lines`` are stripped, non-blank
    records; ``numbers`` their 1-based line numbers in the stream."""
    frame, broken = _parse_json_lines(lines, numbers, dict.fromkeys(WIRE_NAMES, pl.String()))
    return _json_validated(frame, broken, index)


def _lines(fh: BinaryIO) -> Iterator[bytes]:
    """Lines ending in ``\\n``, ``\\r\\n`` or a lone ``\\r`` (JSON text cannot hold a raw one)."""
    carry = b""
    while True:
        block = fh.read(PIECE_BYTES)
        if not block:
            if carry:
                yield from carry.splitlines()
            return
        data = carry + block if carry else block
        parts = data.splitlines(keepends=True)
        last = parts[-1]
        # an unfinished last line (or a CR that may be half of a CRLF) waits for more
        carry = last if not last.endswith(b"\n") else b""
        if carry:
            parts.pop()
        for part in parts:
            yield part.rstrip(b"\r\n")


_NEEDS_EXACT = re.compile(rb":\s*(?:[\[{tfNI]|-?I|-?[0-9]+[.eE])")
"""A value Polars would change on its way to text: a nested value, true/false,
NaN/Infinity, or a number with a fraction or exponent (Polars prints its
double, so ``90071992547409.93`` would become ``...94``)."""


def _parse_json_lines(
    lines: list[bytes], numbers: list[int], schema: Mapping[str, pl.DataType]
) -> tuple[pl.DataFrame, list[tuple[int, str, bytes]]]:
    """Wire columns as the exact text sent, plus ``type`` flags; broken lines apart.

    Plain lines (strings, integers, nulls) go through Polars' reader; a chunk
    with anything Polars would change goes through ``json`` with numbers kept
    as their source text.
    """
    broken: list[tuple[int, str, bytes]] = []
    frame: pl.DataFrame | None = None
    joined = b"\n".join(lines)
    if lines and not _NEEDS_EXACT.search(joined):
        try:
            frame = pl.read_ndjson(io.BytesIO(joined), schema=schema)
            kept = lines
            kept_numbers = numbers
        except (pl.exceptions.PolarsError, ValueError):
            frame = None
    if frame is None:
        columns: dict[str, list[str | None]] = {c: [] for c in schema}
        wrong: dict[str, list[bool]] = {}
        kept, kept_numbers = [], []
        for n, line in zip(numbers, lines, strict=True):
            try:
                obj = json.loads(line, parse_float=str, parse_int=str, parse_constant=str)
            except UnicodeDecodeError:
                broken.append((n, "encoding", line))
                continue
            except (json.JSONDecodeError, RecursionError):
                broken.append((n, "json_syntax", line))
                continue
            if not isinstance(obj, dict):
                broken.append((n, "json_syntax", line))
                continue
            for c, out in columns.items():
                v = obj.get(c)
                if v is None or isinstance(v, str):
                    out.append(v)
                    continue
                out.append(None)
                wrong.setdefault(c, [False] * len(kept))
            for c, marks in wrong.items():
                v = obj.get(c)
                marks.append(not (v is None or isinstance(v, str)))
            kept.append(line)
            kept_numbers.append(n)
        frame = pl.DataFrame(columns, schema=dict(schema)).with_columns(
            pl.Series(_flag("type", c), marks, dtype=pl.Boolean) for c, marks in wrong.items()
        )
    frame = frame.with_columns(
        pl.Series(ROW, kept_numbers, dtype=pl.Int64),
        pl.Series(_RECORD, kept, dtype=pl.Binary),
    )
    return frame, broken


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
    """The validated-to-be records the run finished (``None``: none)."""
    resume: int = -1
    """Where the first record the run did not finish starts (``-1``: it finished all)."""
    records: _Records | None = None
    """Where each parsed record's bytes are (for the rejects file's ``raw``)."""


class _Records:
    """Where a run's records are, to find their bytes again for rejected rows only.

    Carrying every record's bytes (or the piece's buffer) through validation
    costs a third of the read; a plain piece is only noted, and read and split
    again if one of its rows is rejected (rare); a tokenized piece keeps its
    records' offsets.
    """

    def __init__(self, source: _CsvSource, colmap: np.ndarray) -> None:
        self._source = source
        self._width = len(colmap)
        self._parts: list[tuple[_PieceSpec, np.ndarray | None, np.ndarray | None, bool]] = []
        self._firsts: list[int] = []
        self._n = 0
        self._cache: dict[int, tuple[bytes, np.ndarray, np.ndarray]] = {}

    def add(self, spec: _PieceSpec, rows: int, starts: np.ndarray | None = None,
            ends: np.ndarray | None = None, *, simple: bool = False) -> None:
        self._parts.append((spec, starts, ends, simple))
        self._firsts.append(self._n)
        self._n += rows

    def raw(self, local: np.ndarray) -> list[bytes | None]:
        """The bytes of the run's records at 0-based positions ``local``."""
        out: list[bytes | None] = []
        for i in local.tolist():
            k = bisect.bisect_right(self._firsts, i) - 1
            if k < 0 or i >= self._n:
                out.append(None)
                continue
            data, starts, ends = self._piece(k)
            j = i - self._firsts[k]
            out.append(data[int(starts[j]) : int(ends[j])])
        return out

    def _piece(self, k: int) -> tuple[bytes, np.ndarray, np.ndarray]:
        if k not in self._cache:
            spec, starts, ends, simple = self._parts[k]
            data = self._source.load(spec)
            if starts is None or ends is None:
                if simple:
                    starts, ends = _plain_lines(data)
                else:  # quoted fields or CRLF: find the records again
                    tokens = Tokens(data, np.full(self._width, -1, np.int64), 0, spec[2])
                    starts = tokens.rec_start[: tokens.rows]
                    ends = tokens.rec_end[: tokens.rows]
            self._cache[k] = (data, starts, ends)
        return self._cache[k]


def _plain_lines(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of every non-empty line of a piece without quotes or CRs."""
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == _LF)
    if len(buf) and buf[-1] != _LF:
        ends = np.append(ends, len(buf))
    starts = np.zeros(len(ends), dtype=np.int64)
    if len(ends):
        starts[1:] = ends[:-1] + 1
    keep = starts != ends
    return starts[keep], ends[keep]


_PieceSpec = tuple[int, int, bool, bytes | None]
"""``(offset, length, final, data)``: data already read (gzip) or ``None`` (read it)."""
_RECORD = "__record__"


class _CsvSource:
    """The bytes of a CSV file, in runs of whole records, plain or gzipped.

    Plain files are cut without a pass over the bytes: a cut is the last line
    end before a target size, found by reading a small window there, and is
    right unless it fell inside a quoted field. The worker that tokenizes a
    run says so (its last record is unfinished); the reader then calls
    :meth:`restart` and the file is cut again from that record on, so every
    byte is tokenized a bounded number of times. Gzipped files are read in
    order and cut exactly (:func:`scan_records` carries the quote state from
    one block to the next).
    """

    def __init__(self, path: Path, gz: bool) -> None:
        self.path = path
        self.gz = gz
        self.fd = -1
        self._fh: BinaryIO | None = None
        if gz:
            self._fh = cast(BinaryIO, gzip.open(path, "rb"))
            self.size = -1
        else:
            self.fd = os.open(path, os.O_RDONLY)
            self.size = os.fstat(self.fd).st_size
        self.pos = 0
        self.per_record = 100.0
        self._carry = b""
        self._restart: tuple[int, int] | None = None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _sample(self) -> bytes:
        if self._fh is not None:
            try:
                return self._fh.read(SAMPLE_BYTES)
            except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
                raise ContractError(f"{self.path.name}: unreadable CSV (gzip: {exc})") from exc
        return os.pread(self.fd, SAMPLE_BYTES, 0)

    def header(self) -> list[str]:
        """The header's field names; the file position moves to the first record."""
        name = self.path.name
        data = self._sample()
        for bom, enc in OTHER_BOMS:
            if data.startswith(bom):
                raise ContractError(f"{name}: the file is {enc} text; save it as UTF-8")
        start = 3 if data.startswith(UTF8_BOM) else 0
        while start < len(data) and data[start] in (10, 13):
            start += 1  # blank lines before the header
        state = np.zeros(2, dtype=np.int64)
        end = scan_records(np.frombuffer(data, np.uint8), start, len(data), state, True)
        while end < 0:
            more = self._sample() if self._fh is not None else os.pread(
                self.fd, SAMPLE_BYTES, len(data)
            )
            if not more:
                end = len(data)
                break
            scanned = len(data)
            data += more
            end = scan_records(np.frombuffer(data, np.uint8), scanned, len(data), state, True)
        text = data[start:end]
        if not text.strip(b"\r\n"):
            raise ContractError(f"{name}: empty file (no CSV header)")
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContractError(f"{name}: the CSV header is not UTF-8 ({exc.reason})") from exc
        fields = header_fields(text)
        self.pos = end
        body = data[end:]
        if self._fh is not None:
            self._carry = body
        if body:
            self.per_record = max(1.0, len(body) / max(1, line_ends(body)))
        return [f.strip() for f in fields]

    def restart(self, resume: int, task_start: int) -> None:
        """The run's last record was unfinished at ``resume``: cut again from there."""
        self._restart = (resume, task_start)

    def _take_restart(self) -> tuple[int, int] | None:
        restart, self._restart = self._restart, None
        return restart

    def runs(self, chunk_rows: int) -> Iterator[Iterator[list[_PieceSpec]]]:
        """Runs of tasks (each a few pieces, about ``chunk_rows`` records)."""
        target = max(1, int(chunk_rows * self.per_record * 0.95))
        per_task = -(-target // PIECE_BYTES)
        piece_bytes = -(-target // per_task)
        if self._fh is not None:
            yield _groups(self._gzip_pieces(piece_bytes), per_task)
            return
        while self.pos < self.size:
            self._restart = None
            yield _groups(self._plain_pieces(self.pos, piece_bytes), per_task)
            restart = self._take_restart()
            if restart is None:
                return
            resume, task_start = restart
            if resume == task_start:
                # One record longer than a piece (a long quoted field): find its
                # end without holding more than a window, then read it whole.
                end = record_extent(self.fd, resume, self.size)
                yield iter([[(resume, end - resume, True, None)]])
                self.pos = end
            else:
                self.pos = resume

    def _plain_pieces(self, offset: int, piece_bytes: int) -> Iterator[_PieceSpec]:
        size = self.size
        while offset < size:
            end = offset + piece_bytes
            if end >= size:
                yield offset, size - offset, True, None
                return
            cut = line_end_before(self.fd, offset, end)
            if cut <= offset:
                cut = line_end_after(self.fd, end, size)
            yield offset, cut - offset, cut >= size, None
            offset = cut

    def _gzip_pieces(self, piece_bytes: int) -> Iterator[_PieceSpec]:
        assert self._fh is not None
        carry = self._carry
        offset = self.pos
        state = np.zeros(2, dtype=np.int64)
        scanned = 0
        while True:
            try:
                block = self._fh.read(piece_bytes)
            except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
                raise ContractError(f"{self.path.name}: unreadable CSV (gzip: {exc})") from exc
            if not block:
                if carry:
                    yield offset, len(carry), True, carry
                return
            buf = carry + block if carry else block
            last = scan_records(np.frombuffer(buf, np.uint8), scanned, len(buf), state, False)
            if last < 0:
                carry, scanned = buf, len(buf)
                continue
            yield offset, last, False, buf[:last]
            offset += last
            carry = buf[last:]
            scanned = len(carry)

    def load(self, spec: _PieceSpec) -> bytes:
        """A piece's bytes (``os.pread``: no shared file position, workers read in parallel)."""
        offset, length, _, data = spec
        if data is not None:
            return data
        data = os.pread(self.fd, length, offset)
        if len(data) != length:
            raise OSError(f"file changed while read (short read at byte {offset})")
        return data




def _structure_flags(header: list[str]) -> dict[tuple[int, int], str]:
    """Flag column name per (record status, header position) of a broken record."""
    out: dict[tuple[int, int], str] = {(REC_FIELD_COUNT, -1): _flag("field_count", "*")}
    for i, h in enumerate(header):
        for status in (REC_ENCODING, REC_QUOTE):
            out[(status, i)] = _flag(STATUS_RULES[status], h or f"column {i + 1}")
    for status in (REC_ENCODING, REC_QUOTE):
        out[(status, -1)] = _flag(STATUS_RULES[status], "*")
    return out


_VIEW_TYPES = {"s": pa.string_view(), "b": pa.binary_view()}


def _view_array(
    kind: str, n: int, views: np.ndarray, data: np.ndarray, side: np.ndarray,
    nulls: np.ndarray | None,
) -> pa.Array:
    """An Arrow view array over the tokenizer's views (no copy of the text)."""
    validity = None
    if nulls is not None and nulls.any():
        validity = pa.py_buffer(np.packbits(nulls == 0, bitorder="little"))
    buffers = [validity, pa.py_buffer(views), pa.py_buffer(data)]
    if len(side):
        # Unescaped quoted values live apart (rare: only with "" inside quotes).
        buffers.append(pa.py_buffer(side))
    return pa.Array.from_buffers(_VIEW_TYPES[kind], n, buffers)


def _plain_frame(
    data: bytes, schema: dict[str, pl.DataType], cols: list[str], simple: bool = True
) -> pl.DataFrame | None:
    """A piece with no quote and no CR, split by Polars; ``None``: let the tokenizer read it.

    Polars reads such text exactly as the tokenizer does but for one thing
    made good here: an empty line is a row of nulls for Polars (dropped: it is
    no record). Anything Polars refuses (more fields than the header, bytes
    that are not UTF-8) or splits into a number of rows other than the
    piece's lines goes to the tokenizer, which names the broken records.
    """
    try:
        # Every field is read (no projection), which is what makes Polars
        # notice a record with more fields than the header.
        frame = pl.read_csv(
            data, has_header=False, schema=schema, encoding="utf8", missing_columns="insert"
        )
    except pl.exceptions.PolarsError:
        return None
    # An empty line is null in every column; a column without nulls rules
    # them out for free (an O(1) count), the rare rest is checked line by line.
    if frame.height and min(frame.null_count().row(0)) > 0:
        if not simple:
            return None  # (polars_safe ruled out empty lines: something else)
        starts, ends = _plain_lines_all(data)
        if len(starts) != frame.height:
            return None
        frame = frame.filter(pl.Series(starts != ends))
    return frame.select(cols)


def _plain_lines_all(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == _LF)
    if len(buf) and buf[-1] != _LF:
        ends = np.append(ends, len(buf))
    starts = np.zeros(len(ends), dtype=np.int64)
    if len(ends):
        starts[1:] = ends[:-1] + 1
    return starts, ends


_LF = 10


def _token_frame(
    tokens: Tokens, cols: list[str], flags: dict[tuple[int, int], str]
) -> pl.DataFrame:
    """The wire columns of a tokenized run (views into its bytes, no copy of the text)."""
    n = tokens.rows
    side = tokens.side[: tokens.side_used]
    arrays = {
        c: _view_array("s", n, tokens.views[i, :n], tokens.buf, side, tokens.nulls[i, :n])
        for i, c in enumerate(cols)
    }
    frame = cast(pl.DataFrame, pl.from_arrow(pa.table(arrays)))
    status = tokens.rec_status[:n]
    if status.any():
        where = np.flatnonzero(status)
        keys = set(zip(status[where].tolist(), tokens.rec_col[:n][where].tolist(), strict=True))
        marks = []
        for st, col in sorted(keys):
            name = flags[(st, col)]
            mask = (status == st) & (tokens.rec_col[:n] == col)
            marks.append(pl.Series(name, mask))
        frame = frame.with_columns(marks)
    return frame


def _groups(pieces: Iterable[R], size: int) -> Iterator[list[R]]:
    group: list[R] = []
    for piece in pieces:
        group.append(piece)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def _open_binary(path: Path, gz: bool) -> BinaryIO:
    return cast(BinaryIO, gzip.open(path, "rb") if gz else open(path, "rb"))


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


def validate_json_records(
    records: list[bytes], rows: list[int], index: EventIdIndex | None = None
) -> ValidationResult:
    """Validate JSON events that arrive one per message (a Kafka topic, a queue).

    The same contract and code as a JSONL file: ``rows`` numbers the records
    (a message offset), every refused record is a reject with its reason. A
    record holding a line break cannot be a line of JSONL: if it is valid JSON
    the breaks were whitespace between tokens (a JSON string cannot contain a
    raw one) and become spaces; otherwise it is rejected as ``json_syntax``.
    """
    schema = dict.fromkeys(WIRE_NAMES, pl.String())
    lines: list[bytes] = []
    numbers: list[int] = []
    broken: list[tuple[int, str, bytes]] = []
    for n, record in zip(rows, records, strict=True):
        line = record.strip()
        if b"\n" in line or b"\r" in line:
            try:
                json.loads(line)
            except UnicodeDecodeError:
                broken.append((n, "encoding", record))
                continue
            except (json.JSONDecodeError, RecursionError):
                broken.append((n, "json_syntax", record))
                continue
            line = b" ".join(line.splitlines())
        if not line:
            broken.append((n, "json_syntax", record))
            continue
        lines.append(line)
        numbers.append(n)
    frame, more = _parse_json_lines(lines, numbers, schema)
    result = finish(parse(frame, schema), index)
    broken.extend(more)
    if broken:
        result.rejects = pl.concat([result.rejects, structural_rejects(broken)]).sort("row")
    return result
