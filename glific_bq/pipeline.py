"""A pipeline stage in a thread of its own (``ahead``): the read-ahead of the extract and the
encode stage of the sync both run on it. Every wait has a deadline (``StageTimeout``)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

_END = object()
T = TypeVar("T")


#: The longest a pipeline stage waits for the stage before it (a page read, prepared or encoded).
#: The connections' own deadlines (``glific_bq.postgres``) end a stalled read first; this is the
#: backstop, so that no wait is unbounded.
STAGE_TIMEOUT_SECONDS = 2 * 1800


class StageTimeout(TimeoutError):
    """A pipeline stage produced nothing within its deadline."""


def ahead(items: Iterable[T], depth: int = 2, name: str = "glific_bq-ahead",
          timeout: float = STAGE_TIMEOUT_SECONDS, *, inline_first: bool = False) -> Iterator[T]:
    """``items``, produced up to ``depth`` ahead in a thread of their own: a stage of a pipeline.

    The producer's exceptions are raised in the consumer, in order; when the consumer stops
    (exhausted, an error, ``close``), the producer stops at its next item, ``items`` is closed in
    its thread, and the thread is joined before this generator returns, so that nothing still
    reads from a connection the caller goes on to use. Arrow, numpy and ADBC release the GIL in
    their bulk work, so stages overlap on several cores. No wait is unbounded: an item not
    produced within ``timeout`` seconds raises ``StageTimeout``, and a producer that does not
    stop within ``timeout`` is left behind (a daemon thread; the caller then drops the
    connection it was reading, as after any failed sync).

    With ``inline_first``, the first two items are produced in the caller's thread, and the thread
    starts only for a third: a minute sync's pass is one page, and a thread per stage and pass
    (two per pass, four per tenant-table) cost more than the page itself (bench/bench_tick_scale.py).
    Those two items are bounded by the connections' own deadlines, not by ``timeout``.
    """
    if inline_first:
        return _inline_first(items, lambda rest: ahead(rest, depth, name, timeout))
    return _ahead(items, depth, name, timeout)


def _inline_first(items: Iterable[T], then) -> Iterator[T]:
    """``items``: the first two read here, the rest by ``then`` (a stage in a thread)."""
    iterator = iter(items)
    handed_over = False
    try:
        for _ in range(2):
            try:
                item = next(iterator)
            except StopIteration:
                return
            yield item
        handed_over = True
        yield from then(iterator)  # which closes it, in its own thread
    finally:
        close = getattr(iterator, "close", None)
        if close is not None and not handed_over:
            close()


def _ahead(items: Iterable[T], depth: int, name: str, timeout: float) -> Iterator[T]:
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not hand_over(item):
                    return
            hand_over(_END)
        except BaseException as error:  # handed to the consumer, raised there
            hand_over(error)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name=name, daemon=True)
    producer.start()
    try:
        while True:
            try:
                item = ready.get(timeout=timeout)
            except queue.Empty:
                raise StageTimeout(f"{name}: nothing produced for {timeout:g} s") from None
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        producer.join(timeout)
