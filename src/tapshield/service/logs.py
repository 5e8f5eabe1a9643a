"""Structured logs: one JSON object per line on stderr.

Every request line carries the request id (``X-Request-ID``, taken from the
caller when it is a sane token, else generated, and returned in the answer),
the route template, status, duration and the calling key's *id*. It never
carries personal data: no user, device, merchant or payment ids, amounts,
client addresses or keys. Whoever needs a request's details finds them in the
database by its attempt id, under the database's access control.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import sys
import threading
import time
from typing import Any, TextIO

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)))
_RESERVED |= {"message", "asctime", "color_message", "exc_text"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _RESERVED and not k.startswith("_"):
                doc[k] = v
        if record.exc_text:
            doc["error"] = record.exc_text
        elif record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class BackgroundHandler(logging.Handler):
    """Formats and writes on a thread of its own, many lines per write.

    A request's log line costs the request only the hand-over to a queue: the
    formatting, the write system call and the flush happen on the writer
    thread, which takes whatever queued up meanwhile and writes it at once.
    Records left when the process exits are written by an ``atexit`` hook.
    """

    def __init__(self, stream: TextIO | None = None, max_queue: int = 100_000) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self.setFormatter(JsonFormatter())
        self._q: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write, name="tapshield-log", daemon=True)
        self._thread.start()
        self.max_queue = max_queue
        atexit.register(self.close)

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and not record.exc_text:  # tracebacks do not outlive the frame
            record.exc_text = self.formatter.formatException(record.exc_info) if (
                self.formatter) else None
        self._q.put(record)

    def _write(self) -> None:
        fmt = self.formatter or JsonFormatter()
        while True:
            rec = self._q.get()
            batch = [rec]
            while len(batch) < 5_000:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            lines = []
            for r in batch:
                if r is None:
                    continue
                try:
                    lines.append(fmt.format(r))
                except Exception:  # a bad record must not kill the log
                    lines.append(json.dumps({"level": "error", "msg": "unformattable log record",
                                             "logger": r.name}))
            if lines:
                try:
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
                except (OSError, ValueError):
                    pass
            if stop:
                return

    def close(self) -> None:
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join(5.0)
        super().close()


def setup(level: str = "info") -> None:
    """Route tapshield's and uvicorn's loggers through the JSON formatter."""
    handler: logging.Handler = BackgroundHandler()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # uvicorn's access log names the client address; the service logs requests itself.
    logging.getLogger("uvicorn.access").disabled = True


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """A dictConfig for uvicorn workers (they configure logging before the app runs)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"stderr": {"()": f"{__name__}.BackgroundHandler"}},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "CRITICAL"},
        },
    }
