"""[cache] What the cache does with a result: size it, freeze it, hand it out, never touching the caller's data.

A result may share memory with its caller's inputs (a training frame keeps the events' own label
columns and index). So nothing here changes an array in place that the cache did not create:
`freeze` makes read-only *views* (new array objects) and, where pandas cannot track that the
memory is shared, copies instead.

Copy-on-write: pandas 3 always has it (pandas 2 when ``pd.options.mode.copy_on_write = True``).
Then a frozen frame and every hand-out are cheap siblings that pandas knows share memory, so a
write by anyone (the caller to its events, a reader to its result) copies first. Without it
(pandas 2's default) sharing cannot be made safe: the cache copies the result once when it stores
it and each hand-out is a deep copy, which is correct but costs a copy per hit.

Pinning: pandas writes in place to a block it believes nobody else references, which for a
read-only array fails ("assignment destination is read-only"). That is the case for a hand-out
(or a frame derived from it) once the cached frame is gone (evicted, invalidated, cleared, or a
miss too big to store). So every reference group (pandas' ``BlockValuesRefs``, shared by all
blocks viewing one array) that a frozen block joins also holds `_PIN`, a reference that never
dies and lives exactly as long as the group: pandas always sees a second reference and copies
the block before the first write, whoever writes and whenever.
"""

from __future__ import annotations

import sys
import weakref
from typing import Any, TypeVar

__all__ = ["copy_on_write", "freeze", "freeze_and_handout", "handout", "sizeof"]

V = TypeVar("V")

# object columns are sized from this many evenly spaced elements (see `_objects_bytes`)
_OBJECT_SAMPLE = 32


# --------------------------------------------------------------------------------------------
# sizes
# --------------------------------------------------------------------------------------------
def sizeof(value: object) -> int:
    """Return the memory a result holds, in bytes: the default ``getsizeof`` of every cache.

    numpy arrays count their ``nbytes``, pyarrow tables and arrays the size of the buffers they
    reference (a bound: a slice counts its whole buffers); pandas objects the ``nbytes``
    of each block, index level and code array, plus for object-dtype data (Python strings) an
    estimate from a sample of the objects (`_objects_bytes`); anything else ``sys.getsizeof``
    (shallow). The cost grows with the number of blocks and index levels, not with rows, where
    ``memory_usage(deep=True)`` builds a Series per column and visits every string. Numeric data is counted
    exactly; strings within a small factor of ``memory_usage(deep=True)`` (tested).
    """
    pd = sys.modules.get("pandas")
    if pd is not None:
        if isinstance(value, pd.DataFrame):
            return _frame_bytes(value)
        if isinstance(value, pd.Series):
            return _array_bytes(value.array) + _index_bytes(value.index)
        if isinstance(value, pd.Index):
            return _index_bytes(value)
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return _array_bytes(value)
    return _arrow_bytes(value)


def _arrow_bytes(value: Any) -> int:
    total = getattr(value, "get_total_buffer_size", None)  # pyarrow: whole buffers, a bound, ~0.3 µs
    if total is not None:
        return int(total())
    nbytes = getattr(value, "nbytes", None)  # numpy-like; masked extension arrays
    if isinstance(nbytes, int):
        return nbytes
    return sys.getsizeof(value)


def _frame_bytes(frame: Any) -> int:
    blocks = getattr(getattr(frame, "_mgr", None), "blocks", None)
    if blocks is None:  # pandas internals moved: one array per column, still O(columns)
        values = [frame.iloc[:, i].array for i in range(frame.shape[1])]
    else:
        values = [block.values for block in blocks]
    total = _index_bytes(frame.index) + _index_bytes(frame.columns)
    for v in values:  # plain loops: this runs on every cache miss, for frames of one row too
        total += _array_bytes(v)
    return total


def _array_bytes(values: Any) -> int:
    np = sys.modules["numpy"]
    if isinstance(values, np.ndarray):
        n = int(values.nbytes)
        return n + _objects_bytes(values) if values.dtype.kind == "O" else n
    arrow = getattr(values, "_pa_array", None)  # Arrow-backed extension arrays (pandas 3's str)
    if arrow is not None:
        return _arrow_bytes(arrow)
    pd = sys.modules["pandas"]
    if isinstance(values, pd.Categorical):  # before `_ndarray`, which holds only its codes
        codes = getattr(values, "_codes", None)
        codes = values.codes if codes is None else codes
        return int(codes.nbytes) + _index_bytes(values.dtype.categories)
    inner = getattr(values, "_ndarray", None)  # numpy-backed extension arrays (python str, datetimes)
    if isinstance(inner, np.ndarray):
        return _array_bytes(inner)
    nbytes = getattr(values, "nbytes", None)  # masked arrays and other extension arrays
    return int(nbytes) if nbytes is not None else sys.getsizeof(values)


def _index_bytes(index: Any) -> int:
    pd = sys.modules["pandas"]
    if isinstance(index, pd.MultiIndex):
        # the stored levels and codes: the public ``levels`` builds (and keeps) a renamed copy
        # of every level on first use, which costs more than the sizing itself
        levels = getattr(index, "_levels", None)
        codes = getattr(index, "_codes", None)
        total = 0
        for level in index.levels if levels is None else levels:
            total += _index_bytes(level)
        for c in index.codes if codes is None else codes:
            total += int(c.nbytes)
        return total
    if isinstance(index, pd.RangeIndex):
        return sys.getsizeof(index)
    values = getattr(index, "_values", None)  # the backing array, without a public wrapper
    return _array_bytes(index.array if values is None else values)


def _objects_bytes(values: Any) -> int:
    """The Python objects an object array points to, estimated from up to 32 evenly spaced ones.

    Like ``memory_usage(deep=True)`` it counts ``sys.getsizeof`` of every element (an object
    referenced twice counts twice); the sample keeps the cost independent of the row count.
    """
    n = values.size
    if n == 0:
        return 0
    flat = values.ravel(order="K")
    step = -(-n // _OBJECT_SAMPLE)
    sample = flat[::step]
    getsize = sys.getsizeof
    return sum(getsize(obj) for obj in sample) * n // len(sample)


# --------------------------------------------------------------------------------------------
# read-only values and hand-outs
# --------------------------------------------------------------------------------------------
_always_cow: list[object] = []  # the pandas module once it is known to be 3 or later


def copy_on_write() -> bool:
    """True when pandas is in copy-on-write mode (always on pandas 3; opt-in on pandas 2)."""
    pd = sys.modules.get("pandas")
    if pd is None:
        return True  # no pandas object can exist
    if _always_cow and _always_cow[0] is pd:
        return True
    if int(pd.__version__.split(".", 1)[0]) >= 3:
        _always_cow[:] = [pd]
        return True
    return getattr(pd.options.mode, "copy_on_write", False) is True  # pandas 2: True, False or "warn"


class _Pinned:
    """The referent of `_PIN`: one module-level instance, alive for the life of the process."""


_PINNED = _Pinned()
# a weak reference that never dies: pandas keeps live entries of a reference group and counts
# them, so this entry makes every group holding it count one reference more than its blocks
_PIN = weakref.ref(_PINNED)


def _pin(refs: Any) -> None:
    """Add `_PIN` to a pandas reference group (once, at the front, so the check is O(1))."""
    entries = refs.referenced_blocks
    if not entries or entries[0] is not _PIN:
        entries.insert(0, _PIN)


def _read_only_view(array: Any) -> Any:
    view = array.view()
    view.flags.writeable = False
    return view


def _read_only_extension(values: Any) -> Any:
    """A new extension array over read-only views of a numpy-backed one's buffers, else None.

    Datetimes, categoricals (their codes), NumPy-backed strings and masked arrays (``Int64``)
    write their numpy buffers in place on ``Series.array[i] = x``, past copy-on-write. Arrow-backed
    arrays hold immutable buffers (a write replaces the array's buffer reference) and stay as they are.
    """
    np = sys.modules["numpy"]
    backing = getattr(values, "_ndarray", None)
    rebuild = getattr(values, "_from_backing_data", None)
    if isinstance(backing, np.ndarray) and rebuild is not None:
        return rebuild(_read_only_view(backing))
    data, mask = getattr(values, "_data", None), getattr(values, "_mask", None)
    if isinstance(data, np.ndarray) and isinstance(mask, np.ndarray):
        return type(values)(_read_only_view(data), _read_only_view(mask), copy=False)
    return None


def freeze(value: V) -> V:
    """Return a read-only version of a result for the cache to keep; the argument is not changed.

    numpy arrays -> a read-only copy (its hand-outs are views nobody can make writeable). A
    pandas DataFrame -> a new frame over read-only views of its numpy blocks that pandas knows
    share memory with the argument (copy-on-write), so a later write to the argument, or to any
    array the argument shares with the caller's inputs, copies first and never reaches the
    cached frame; without copy-on-write, a deep copy made read-only. A Series -> a copy-on-write
    sibling (a deep copy without copy-on-write). pyarrow tables are immutable and returned as
    they are, anything else too.
    """
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        # a copy the cache owns, so no view of it can ever be made writeable again
        owned = value.copy()
        owned.flags.writeable = False
        return owned  # type: ignore[no-any-return]
    pd = sys.modules.get("pandas")
    if pd is None or not isinstance(value, (pd.DataFrame, pd.Series)):
        return value
    cow = copy_on_write()
    if np is None or isinstance(value, pd.Series):
        return value.copy(deep=not cow)  # type: ignore[return-value]
    frame = value if cow else value.copy(deep=True)
    try:
        mgr = frame._mgr
        blocks = []
        for block in mgr.blocks:
            values = block.values
            frozen = _read_only_view(values) if isinstance(values, np.ndarray) else _read_only_extension(values)
            if frozen is not None:
                # refs= registers the view with pandas' reference tracking (copy-on-write)
                refs = block.refs if cow else None
                blocks.append(block.make_block_same_class(frozen, refs=refs))
            else:
                blocks.append(block.copy(deep=False))
        if cow:
            for block in blocks:
                _pin(block.refs)
        new = type(mgr)(tuple(blocks), mgr.axes, verify_integrity=False)
        return type(frame)._from_mgr(new, axes=new.axes)  # type: ignore[no-any-return]
    except (AttributeError, TypeError):  # pandas internals moved: a sibling without the lock
        return frame.copy(deep=False) if cow else frame  # type: ignore[no-any-return]


def freeze_and_handout(value: V) -> tuple[V, V]:
    """Return ``(freeze(value), handout(freeze(value)))`` built in one pass: the miss path.

    The computing caller of a miss needs both the frozen result the cache keeps and its own
    hand-out of it; for a pandas DataFrame under copy-on-write both frames are made from one
    walk over the blocks (one read-only view per block, pinned once), otherwise by the two calls.
    """
    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    if np is None or pd is None or type(value) is not pd.DataFrame or not copy_on_write():
        frozen = freeze(value)
        return frozen, handout(frozen)
    frame: Any = value
    try:
        mgr = frame._mgr
        kept = []
        given = []
        for block in mgr.blocks:
            values = block.values
            ro = _read_only_view(values) if isinstance(values, np.ndarray) else _read_only_extension(values)
            # refs= registers the view with pandas' reference tracking, as in `freeze`
            own = block.copy(deep=False) if ro is None else block.make_block_same_class(ro, refs=block.refs)
            _pin(own.refs)
            kept.append(own)
            given.append(own.copy(deep=False))  # the hand-out's block: same values, same (pinned) group
        manager = type(mgr)
        frozen_mgr = manager(tuple(kept), mgr.axes, verify_integrity=False)
        given_mgr = manager(tuple(given), frozen_mgr.axes, verify_integrity=False)
        build = type(frame)._from_mgr
        return build(frozen_mgr, axes=frozen_mgr.axes), build(given_mgr, axes=given_mgr.axes)
    except (AttributeError, TypeError):  # pandas internals moved: the two public steps
        frozen = freeze(value)
        return frozen, handout(frozen)


def handout(value: V) -> V:
    """Return the object to give one caller for a cached result, so nothing it does reaches the cache.

    pandas with copy-on-write -> a new frame over new shallow blocks that share the cached data,
    and the cached (immutable) index and columns objects, cheaper than
    ``DataFrame.copy(deep=False)``, which re-views a MultiIndex. The caller may write to it in any way
    (values are copied on first write) and the cached frame stays unchanged; only renaming the
    shared axes in place (``df.index.names = ...``) would reach it, so use ``rename_axis``.
    pandas without copy-on-write -> a deep copy (the only safe hand-out there). numpy -> a
    read-only view (a caller cannot switch ``writeable`` back on). Anything else as is.
    """
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return _read_only_view(value)  # type: ignore[no-any-return]
    pd = sys.modules.get("pandas")
    if pd is None or not isinstance(value, (pd.DataFrame, pd.Series)):
        return value
    if not copy_on_write():
        return value.copy(deep=True)  # type: ignore[return-value]
    if isinstance(value, pd.Series):
        return value.copy(deep=False)  # type: ignore[return-value]
    mgr = value._mgr
    try:
        blocks = tuple(b.copy(deep=False) for b in mgr.blocks)
        for block in blocks:  # already pinned when `freeze` made the value: O(1) per block
            _pin(block.refs)
        new = type(mgr)(blocks, mgr.axes, verify_integrity=False)
        return type(value)._from_mgr(new, axes=new.axes)  # type: ignore[no-any-return]
    except (AttributeError, TypeError):  # pandas internals moved: the public, slower way
        return value.copy(deep=False)  # type: ignore[return-value]
