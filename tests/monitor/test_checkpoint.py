"""A monitor exported mid-stream and restored carries on exactly as if never stopped."""

from __future__ import annotations

import pickle
import zlib

import pytest

from tapshield.monitor import AlertEvent, Monitor
from tapshield.monitor.checkpoint import (
    MAGIC,
    StaleCheckpointError,
    export_state,
    fingerprint,
    restore_state,
)
from tapshield.pipeline import Analysis, PipelineConfig

from .test_batching import fingerprint as events_fp
from .test_batching import stream

KEY = b"k" * 32


def test_restore_mid_outage_continues_identically() -> None:
    frame = stream()
    cut = frame.height * 3 // 5  # inside the three overlapping faults
    whole = Monitor()
    expected = [*whole.process(frame), *whole.close()]
    first = Monitor()
    before = first.process(frame.slice(0, cut))
    assert first.open_alerts(), "the cut must fall inside an open wave"
    blob = export_state(first, KEY, config=fingerprint(first.config))
    second, header = restore_state(blob, KEY, config=fingerprint(first.config))
    assert isinstance(second, Monitor) and header["config"] == fingerprint(first.config)
    after: list[AlertEvent] = [*second.process(frame.slice(cut)), *second.close()]
    assert events_fp(before + after) == events_fp(expected)


def test_pipeline_keeps_open_incidents() -> None:
    frame = stream()
    cut = frame.height * 3 // 5
    a = Analysis(PipelineConfig(diagnose=False))
    a.feed(frame.slice(0, cut))
    open_before = [i.id for i in a.book.incidents() if i.end is None]
    assert open_before
    b, _ = restore_state(export_state(a, KEY), KEY)
    assert [i.id for i in b.book.incidents() if i.end is None] == open_before


def test_refuses_forged_stale_and_foreign_blobs() -> None:
    m = Monitor()
    blob = export_state(m, KEY, config="c1")
    with pytest.raises(StaleCheckpointError, match="signature"):
        restore_state(blob, b"other key" * 4, config="c1")
    with pytest.raises(StaleCheckpointError, match="configuration"):
        restore_state(blob, KEY, config="c2")
    tampered = bytearray(blob)
    tampered[-5] ^= 1
    with pytest.raises(StaleCheckpointError, match="signature"):
        restore_state(bytes(tampered), KEY, config="c1")

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return os.system, ("true",)

    # a correctly signed blob (someone holding the key) still cannot call os.system
    import hashlib
    import hmac
    import json

    from tapshield import __version__
    header = json.dumps({"version": __version__, "config": ""}, sort_keys=True).encode()
    body = zlib.compress(pickle.dumps(Evil()))
    signed = len(header).to_bytes(4, "big") + header + body
    evil = MAGIC + hmac.new(KEY, signed, hashlib.sha256).digest() + signed
    with pytest.raises(StaleCheckpointError, match="not an allowed type"):
        restore_state(evil, KEY)
