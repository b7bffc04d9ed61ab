"""The shared buckets' bounds (docs/cluster.md, "Shared state"): the largest value each
takes and its whole size, so no entry a stranger puts there can fill a node's memory."""

from __future__ import annotations

from dataclasses import dataclass

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

# A silence's value: its comment (1,000 characters) and three patterns (each at most
# [server] max_silence_pattern), 6 bytes a character at worst in JSON (\u001f), and
# room for its automation's name, its id and times.
SILENCE_CHARS = 1000
SILENCE_REST = 4096
DISABLED_VALUE = 8192  # an integration's name and why it was disabled
DISABLED_BYTES = 2 * 1024 * 1024  # 256 entries at their largest, thousands as written
DISABLED_BOUNDS = (DISABLED_VALUE, DISABLED_BYTES)
ENTRY_OVERHEAD = 256  # what JetStream counts per message besides its value (subject, headers)


@dataclass(frozen=True, slots=True)
class Bounds:
    """What the shared buckets are made with, from [server] max_silences and
    max_silence_pattern (every node is given the same file)."""

    max_silences: int = 500
    max_pattern: int = 256

    @property
    def silence_value(self) -> int:
        return 6 * (SILENCE_CHARS + 3 * self.max_pattern) + SILENCE_REST

    @property
    def silences(self) -> tuple[int, int]:
        """The silences bucket's: its largest value, its whole size (max_silences
        values at their largest, with what JetStream counts besides)."""
        return self.silence_value, self.max_silences * (self.silence_value + ENTRY_OVERHEAD)


async def bounded(js: JetStreamContext, bucket: str, replicas: int, value: int,
                  total: int) -> KeyValue:
    """The bucket, made with these bounds; one made by an older runhook (no bounds) or
    under other settings is given them."""
    config = KeyValueConfig(bucket=bucket, history=1, replicas=replicas, max_value_size=value,
                            max_bytes=total)
    try:
        return await js.create_key_value(config)
    except nats.js.errors.BadRequestError as refused:  # it exists with other bounds
        try:
            existing = (await js.stream_info(f"KV_{bucket}")).config
        except nats.js.errors.NotFoundError:  # it does not: the refusal says why
            raise refused from None
        existing.max_msg_size, existing.max_bytes = value, total
        await js.update_stream(existing)
        return await js.create_key_value(config)
