"""Micro-batching: many request threads, one model thread, one batched model call per gathering.

Request threads call :meth:`MicroBatcher.submit` and block; one worker thread takes the first waiting
item, keeps gathering for up to ``max_wait_ms`` or until ``max_batch`` items, and runs
``run_batch(items)`` once for all of them. While a batch runs, new requests queue up and form the
next batch, so under load batches grow by themselves and at low load a request waits at most
``max_wait_ms`` more than the model call. The model only ever runs on the worker thread (Keras and
TensorFlow functions are not meant to be called from many threads at once).

Importing this module does not import TensorFlow.
"""
import collections
import logging
import queue
import threading
import time

__all__ = ['MicroBatcher', 'BatcherClosed', 'BatcherBusy']

_logger = logging.getLogger(__name__)
_STOP = object()  # queued by stop(): everything submitted before it is still run


class BatcherClosed(RuntimeError):
    """submit() after stop(): the server is shutting down."""


class BatcherBusy(RuntimeError):
    """submit() while ``max_queue`` items already wait."""


class _Pending(object):
    __slots__ = ('item', 'done', 'result', 'error', 'cancelled')

    def __init__(self, item):
        self.item = item
        self.done = threading.Event()
        self.result = None
        self.error = None
        self.cancelled = False


class MicroBatcher(object):
    """Collects single items from many threads into batches for one function.

    Args:
        run_batch: called on the worker thread as ``run_batch(items)`` (a list of 1..max_batch items,
            in arrival order); must return a list of as many results, in the same order. If it
            raises, every item of that batch gets the exception.
        max_batch: most items per call (>= 1).
        max_wait_ms: how long to keep gathering after the first item arrives (>= 0; 0 = take only
            what is already waiting).
        max_queue: most items waiting at once; beyond it :meth:`submit` raises `BatcherBusy`.

    Attributes:
        batches, items, largest_batch: counters of the calls made so far (read with :meth:`stats`).
    """

    def __init__(self, run_batch, max_batch=32, max_wait_ms=5.0, max_queue=1024):
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError('MicroBatcher: max_batch must be a whole number >= 1, got %r' % (max_batch,))
        if not max_wait_ms >= 0:
            raise ValueError('MicroBatcher: max_wait_ms must be >= 0, got %r' % (max_wait_ms,))
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ValueError('MicroBatcher: max_queue must be a whole number >= 1, got %r' % (max_queue,))
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._queue = queue.Queue()  # unbounded: max_queue is counted in submit, so _STOP always fits
        self._lock = threading.Lock()  # orders submit() against stop(): nothing is queued after _STOP
        self._waiting = 0
        self._closed = False
        self._thread = None
        self.batches = 0
        self.items = 0
        self.largest_batch = 0
        self.batch_sizes = collections.Counter()

    def start(self):
        """Start the worker thread (once)."""
        if self._thread is not None:
            raise RuntimeError('MicroBatcher.start: already started')
        self._thread = threading.Thread(target=self._work, name='serve-batcher', daemon=True)
        self._thread.start()

    def submit(self, item, timeout=None):
        """Queue `item`, wait for its batch to run, and return its result (or raise its batch's error).

        Args:
            item: anything `run_batch` understands.
            timeout: seconds to wait at most (None = no limit); then `TimeoutError` is raised and the
                item is skipped if its batch has not started yet.
        Raises:
            BatcherClosed: after :meth:`stop`. BatcherBusy: `max_queue` items already wait.
            TimeoutError: no result within `timeout`.
        """
        pending = _Pending(item)
        with self._lock:
            if self._closed or self._thread is None:
                raise BatcherClosed('the server is shutting down' if self._closed else 'the batcher is not started')
            if self._waiting >= self.max_queue:
                raise BatcherBusy('%d requests are already waiting (the queue limit)' % self.max_queue)
            self._waiting += 1
            self._queue.put(pending)
        if not pending.done.wait(timeout):
            pending.cancelled = True
            raise TimeoutError('no answer within %g s' % timeout)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _next(self, timeout):
        """The next queued entry, or None when nothing comes within `timeout` (0 = only what is there)."""
        try:
            return self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None

    def _work(self):
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                entry = self._next(max(0.0, deadline - time.monotonic()))
                if entry is None:
                    break
                if entry is _STOP:
                    stopping = True
                    break
                batch.append(entry)
            with self._lock:
                self._waiting -= len(batch)
            self._run([p for p in batch if not p.cancelled])

    def _run(self, batch):
        if not batch:
            return
        try:
            results = self.run_batch([p.item for p in batch])
            if len(results) != len(batch):
                raise RuntimeError('run_batch returned %d results for %d items' % (len(results), len(batch)))
        except Exception as error:  # every waiting request gets it (the server answers 500)
            _logger.exception('batch of %d failed', len(batch))
            results, failure = None, error
        self.batches += 1
        self.items += len(batch)
        self.largest_batch = max(self.largest_batch, len(batch))
        self.batch_sizes[len(batch)] += 1
        for i, pending in enumerate(batch):
            if results is None:
                pending.error = failure
            else:
                pending.result = results[i]
            pending.done.set()

    def stats(self):
        """{'batches', 'items', 'largest_batch', 'mean_batch', 'waiting'}: what the worker has done so far."""
        return {'batches': self.batches, 'items': self.items, 'largest_batch': self.largest_batch,
                'mean_batch': round(self.items / self.batches, 2) if self.batches else 0.0,
                'waiting': self._waiting}

    def stop(self, timeout=None):
        """Refuse new items, run the ones already queued, and end the worker thread.

        Returns:
            True if the worker ended within `timeout` seconds (None = wait as long as it takes).
        """
        with self._lock:
            if self._closed:
                already = True
            else:
                already = False
                self._closed = True
                self._queue.put(_STOP)
        thread = self._thread
        if thread is None:
            return True
        if not already or thread.is_alive():
            thread.join(timeout)
        return not thread.is_alive()
