"""Consumer lag and progress, from the broker alone (``stream status``).

Workers commit their input offsets in every exactly-once checkpoint, so their
lag is the input's end minus their committed offset. The analysis commits its
read positions on ``T.canonical`` every two seconds as progress markers.
Kafka exporters (Burrow, kafka-lag-exporter) read the same two groups.
"""

from __future__ import annotations

from typing import Any

from tapshield.stream.topics import ANALYSIS_GROUP, WORKER_GROUP, Topics


def stream_status(brokers: str, topic: str, timeout: float = 10.0) -> dict[str, Any]:
    from confluent_kafka import Consumer, TopicPartition

    topics = Topics(topic)
    groups = {"workers": f"{WORKER_GROUP}.{topic}", "analysis": f"{ANALYSIS_GROUP}.{topic}"}
    probes = {name: Consumer({"bootstrap.servers": brokers, "group.id": gid,
                              "enable.auto.commit": False})
              for name, gid in groups.items()}
    try:
        w, a = probes["workers"], probes["analysis"]
        meta = w.list_topics(timeout=timeout)
        info = meta.topics.get(topic)
        if info is None or info.error is not None:
            from tapshield.errors import ContractError

            raise ContractError(f"topic {topic} not found on {brokers}")
        parts = sorted(info.partitions)
        rows = []
        done = {tp.partition: tp.offset for tp in
                w.committed([TopicPartition(topic, p) for p in parts], timeout=timeout)}
        canon = {tp.partition: tp.offset for tp in a.committed(
            [TopicPartition(topics.canonical, p) for p in parts], timeout=timeout)}
        for p in parts:
            _, end = w.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout,
                                             cached=False)
            _, cend = w.get_watermark_offsets(TopicPartition(topics.canonical, p),
                                              timeout=timeout, cached=False)
            wd = max(done.get(p, -1), 0)
            ad = max(canon.get(p, -1), 0)
            rows.append({"partition": p, "input_end": end, "workers_committed": wd,
                         "worker_lag": max(0, end - wd), "canonical_end": cend,
                         "analysis_committed": ad, "analysis_lag": max(0, cend - ad)})
        dead = 0
        if topics.dead_letter in meta.topics:
            low, high = w.get_watermark_offsets(TopicPartition(topics.dead_letter, 0),
                                                timeout=timeout, cached=False)
            dead = high - low
        return {
            "topic": topic, "groups": groups, "partitions": rows,
            "worker_lag": sum(r["worker_lag"] for r in rows),
            "analysis_lag": sum(r["analysis_lag"] for r in rows),
            "dead_letters": dead,
        }
    finally:
        for c in probes.values():
            c.close()
