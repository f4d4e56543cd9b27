"""[write] A view's backfill batches as Ray tasks: each batch a task on some node of the cluster,
writing its entities' features through a connection of its own, in one transaction.

A batch is all-or-nothing (:func:`~featurestore.write.backfill.backfill_batch`) and skips the
entities a previous attempt committed, so running one twice is harmless. That makes Ray's own
recovery safe: a task whose worker process or node dies, or whose connection drops, is retried
(on another node if its node is gone); its open transaction was rolled back by the server when the
connection closed. Whatever stops the run for good (a batch's own error, retries used up, Ctrl-C)
cancels the tasks still queued or running and leaves the committed batches in place: the same
``create_view`` call resumes with the entities left.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg

from featurestore.errors import BackfillInterrupted, ConfigError, FeatureStoreError
from featurestore.views import FeatureView
from featurestore.write.backfill import backfill_worker
from featurestore.write.features import Computed, Marks

_log = logging.getLogger("featurestore.write")

# Ray retries a task whose worker or node died this many times; a batch whose connection dropped
# (psycopg.OperationalError: the server restarted, a network blip) is retried as well.
MAX_RETRIES = 3


@dataclass
class RayBackfill:
    """What a Ray backfill did: batches and rows committed, and batches per Ray node id."""

    batches: int = 0
    rows: int = 0
    nodes: Counter[str] = field(default_factory=Counter)


def _batch(url: str, name: str, version: int, entity_ids: Sequence[int]) -> tuple[int, str]:
    """The Ray task: one batch (:func:`backfill_worker`), and the node it ran on."""
    import ray

    return backfill_worker(url, name, version, entity_ids), ray.get_runtime_context().get_node_id()


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # an optional dependency
        raise ConfigError("backend='ray' needs Ray: pip install 'featurestore[ray]'") from exc
    return ray


def _connected() -> Any:
    """Ray, connected: ``ray.init()`` when this process has no connection yet (the cluster in
    ``RAY_ADDRESS``, else the one ``ray start`` made on this machine, else a new local one)."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init(log_to_driver=False)
    return ray


def check_available() -> None:
    """ConfigError now (before a view is registered) when Ray is not installed."""
    _ray()


def run_backfill(
    url: str, view: FeatureView, batches: list[list[int]], *, in_flight: int | None, on_batch: Callable[[], None]
) -> RayBackfill:
    """Run ``batches`` of ``view``'s backfill as Ray tasks; return what they did.

    Connects with ``ray.init()`` when this process has no Ray connection yet: that is the cluster
    in ``RAY_ADDRESS``, else the one ``ray start`` made on this machine, else a new local one.
    ``in_flight`` caps the batches running at once (each holds a database connection); ``None``
    leaves it to Ray (one per free CPU in the cluster). ``on_batch`` is called as each commits.
    """
    ray = _connected()
    task = ray.remote(_batch).options(max_retries=MAX_RETRIES, retry_exceptions=[psycopg.OperationalError])
    queue = list(reversed(batches))
    limit = max(1, in_flight) if in_flight else len(batches)
    running: list[Any] = []
    report = RayBackfill()
    try:
        while queue or running:
            while queue and len(running) < limit:
                running.append(task.remote(url, view.name, view.version, queue.pop()))
            done, running = ray.wait(running, num_returns=1)
            try:
                rows, node = ray.get(done[0])
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, FeatureStoreError):
                    raise cause from None  # the batch's own error (a ValidationError), as a local run raises it
                raise _interrupted(view, report, len(batches), exc) from exc
            except ray.exceptions.RayError as exc:  # a worker or node died and the retries are used up
                raise _interrupted(view, report, len(batches), exc) from exc
            report.batches += 1
            report.rows += rows
            report.nodes[node] += 1
            on_batch()
    finally:
        for ref in running:  # a batch cut off here rolls back; its entities stay pending
            ray.cancel(ref, force=True)
    _log.info(
        "backfill of %s v%s on Ray: %d batches, %d rows, over %d nodes",
        view.name, view.version, report.batches, report.rows, len(report.nodes),
    )
    return report


def _interrupted(view: FeatureView, report: RayBackfill, total: int, exc: BaseException) -> BackfillInterrupted:
    return BackfillInterrupted(
        f"the backfill of view {view.name!r} v{view.version} on Ray stopped after {report.batches} of {total} "
        f"batches: {type(exc).__name__}: {exc}. The committed batches stay; the same create_view call "
        "resumes with the entities left"
    )


def _compute_part(
    view: FeatureView, inputs: dict[str, np.ndarray], offsets: np.ndarray, state: np.ndarray | None, n0: np.ndarray
) -> tuple[dict[str, np.ndarray], list[np.ndarray], Marks, str]:
    """The Ray task of :func:`compute_features`: one part's features, and the node it ran on."""
    import ray

    from featurestore.write.features import _compute

    outs, states, marks = _compute(view, inputs, offsets, state, n0)
    return outs, states, marks, ray.get_runtime_context().get_node_id()


def compute_features(
    view: FeatureView, inputs_all: dict[str, np.ndarray], offsets: np.ndarray, state: np.ndarray | None, n0: np.ndarray
) -> Computed:
    """``features._compute`` split by entity over Ray tasks (one part per CPU of the cluster, of
    about equal rows), merged back in entity order: the same outputs, states and checkpoints,
    bit for bit (each entity's bars stay in one part and the kernels run unchanged). The write
    that asked for them stores them in its own transaction; a task that fails raises here, and
    the write rolls back."""
    ray = _connected()
    n_entities = offsets.size - 1
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    parts = min(n_entities, cpus)
    # cut at entity boundaries, about equal rows per part
    cuts = np.searchsorted(offsets, np.linspace(0, offsets[-1], parts + 1)[1:-1])
    bounds = np.unique(np.r_[0, np.clip(cuts, 1, n_entities - 1), n_entities])
    task = ray.remote(_compute_part).options(max_retries=MAX_RETRIES)
    refs = []
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        lo, hi = int(offsets[a]), int(offsets[b])
        refs.append(task.remote(
            view, {k: v[lo:hi] for k, v in inputs_all.items()}, offsets[a : b + 1] - lo,
            None if state is None else state[a:b], n0[a:b],
        ))
    try:
        results = ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        raise (cause if isinstance(cause, Exception) else exc) from None
    outs = {c: np.concatenate([r[0][c] for r in results]) for c in results[0][0]}
    states = [np.concatenate([r[1][i] for r in results]) for i in range(len(results[0][1]))]
    marks: Marks = []
    for (_outs, _states, part_marks, _node), a in zip(results, bounds[:-1].tolist()):
        base = int(offsets[a])
        marks += [(hit + a, pos + base, cnt, rows) for hit, pos, cnt, rows in part_marks]
    _log.info(
        "features of view %s v%s for %d entities computed on Ray: %d parts over %d nodes",
        view.name, view.version, n_entities, len(results), len({r[3] for r in results}),
    )
    return outs, states, marks
