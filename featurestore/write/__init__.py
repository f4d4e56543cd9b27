"""[write] One transaction per load: bars, features, indicator state, load log, write generation.

How rows reach ``bars`` depends on what they do, because a blanket upsert costs several times a
COPY (benchmarks/load.py measures the write paths side by side):

- rows after an entity's last stored bar go straight in by binary COPY;
- rows at or before it go through a temporary staging table and an ``INSERT ... ON CONFLICT``
  that updates only rows whose values differ, so an identical reload changes nothing;
- a small load (a live append of a few bars) skips both and runs one prepared
  ``INSERT ... SELECT FROM unnest(...) ON CONFLICT`` statement.

Features follow for every registered view version. An entity whose new bars all come after its
saved indicator state continues from that state; an entity with late or corrected bars, or with
no state, is recomputed from its first bar. Either way the stored features equal TA-Lib over the
entity's full stored history, bit for bit. Invariant: a view table holds rows for an entity iff
``indicator_state`` holds that entity's state for the view (both are written together).

Concurrent writers lock the entities they touch (their ``entity_keys`` rows, ``FOR UPDATE``, in
one global order: featurestore.placement.lock_entities), so loads of overlapping symbols serialize
per entity and disjoint ones run in parallel, on one PostgreSQL and on Citus alike.
"""


from __future__ import annotations

from featurestore.write.backfill import backfill_batch, backfill_worker, pending_backfill
from featurestore.write.copy import BAR_TYPES, COPY_ROWS, copy_in, copy_out
from featurestore.write.features import FEATURE_BATCH_ENTITIES, MemoryBars, write_features
from featurestore.write.generation import NOTIFY_CHANNEL, NOTIFY_MAX_BYTES, bump_generation
from featurestore.write.load import MEMORY_ROWS_MAX, ON_CONFLICT, PHASES, SMALL_WRITE_ROWS, LoadResult, LoadWriter
from featurestore.write.state import pack_states, unpack_states

__all__ = [
    "LoadResult",
    "LoadWriter",
    "write_features",
    "NOTIFY_CHANNEL",
    "NOTIFY_MAX_BYTES",
    "ON_CONFLICT",
    "PHASES",
    "SMALL_WRITE_ROWS",
    "MEMORY_ROWS_MAX",
    "COPY_ROWS",
    "FEATURE_BATCH_ENTITIES",
    "BAR_TYPES",
    "MemoryBars",
    "copy_in",
    "copy_out",
    "pack_states",
    "unpack_states",
    "bump_generation",
    "pending_backfill",
    "backfill_batch",
    "backfill_worker",
]
