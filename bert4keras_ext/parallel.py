"""``parallel_apply`` / ``parallel_apply_generator``: bert4keras' multi-process (or thread) map.

Same signatures and results as bert4keras 0.11.5::

    parallel_apply(func, iterable, workers, max_queue_size, callback=None, dummy=False,
                   random_seeds=True, unordered=True)

``dummy=False`` runs ``func`` in ``workers`` processes, ``dummy=True`` in threads. At most
``max_queue_size`` inputs wait in the queue, so ``iterable`` may be a lazy stream (a file) and is
consumed as the workers go. Differences from bert4keras, all about failures (where it hung forever):
an exception in ``func`` stops the run and is raised here with the item's index and the worker's
traceback, and a worker process that dies (killed, out of memory) raises instead of waiting.

Processes are started with ``fork`` where the platform has it (what bert4keras relied on: ``func``
may then be a closure or lambda); elsewhere ``func`` and the items must be picklable.
"""
import multiprocessing
import pickle
import queue
import threading
import traceback

import numpy as np

__all__ = ['parallel_apply', 'parallel_apply_generator']

_POLL_S = 0.1  # how often a waiting loop re-checks that the workers are alive / should stop


def _worker_loop(func, in_queue, out_queue, seed, stop):
    """Run ``func`` on ``(index, item)`` pairs from ``in_queue`` until a ``None`` arrives.

    ``stop`` is a threading.Event for threads; for processes it is None and results are pickled
    here, because a multiprocessing queue pickles in a background thread whose errors are only
    printed (the result would be lost and the caller would wait forever).
    """
    if seed is not False:  # False: leave the generator alone
        np.random.seed(seed)  # None: fresh OS entropy (forked children would share the parent's)
    while not (stop is not None and stop.is_set()):
        try:
            task = in_queue.get(timeout=_POLL_S)
        except queue.Empty:
            continue
        if task is None:
            break
        index, item = task
        try:
            message = (index, True, func(item))
            if stop is None:
                message = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        except BaseException as e:  # noqa: B902  (report anything, then keep serving)
            message = (index, False, (repr(e), traceback.format_exc()))
            if stop is None:
                message = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        out_queue.put(message)


def _seeds(random_seeds, workers, dummy):
    """Per-worker seed: an int/None seeds ``np.random`` in that worker, False leaves it alone."""
    if random_seeds is True:
        seeds = [None] * workers
    elif random_seeds is None or random_seeds is False:
        seeds = []
    else:
        seeds = list(random_seeds)
    if dummy:
        # Threads share numpy's global generator: reseeding it from entropy would only throw away
        # the user's np.random.seed(...); explicit seeds are applied as bert4keras did.
        seeds = [s if s is not None else False for s in seeds]
    return (seeds + [False] * workers)[:workers]


def parallel_apply_generator(func, iterable, workers, max_queue_size, dummy=False,
                             random_seeds=True):
    """Apply ``func`` to every item of ``iterable`` in parallel; yield ``(index, result)`` pairs.

    Results come in completion order (not input order); ``index`` is the item's position in
    ``iterable``.

    Args:
        func: one-argument function.
        iterable: the inputs (read lazily).
        workers: number of processes / threads (int >= 1).
        max_queue_size: at most this many inputs wait for a worker (int >= 1).
        dummy: False -> processes, True -> threads (for I/O-bound work or unpicklable state).
        random_seeds: True -> every worker process reseeds ``np.random`` from fresh entropy (so
            forked workers do not draw the same numbers); False/None -> no reseeding; a list ->
            worker ``k`` calls ``np.random.seed(random_seeds[k])`` (missing entries: no reseeding).
            Threads share one generator, so with ``dummy=True`` only explicit seeds are applied.

    Raises:
        RuntimeError: ``func`` raised on some item (message: index, error, worker traceback), or a
            worker process died.
    """
    for name, value in (('workers', workers), ('max_queue_size', max_queue_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError('parallel_apply: %s must be an int >= 1, got %r' % (name, value))
    seeds = _seeds(random_seeds, workers, dummy)

    if dummy:
        in_queue, out_queue, stop = queue.Queue(max_queue_size), queue.Queue(), threading.Event()
        pool = [threading.Thread(target=_worker_loop, args=(func, in_queue, out_queue, s, stop),
                                 daemon=True) for s in seeds]
    else:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context('fork' if 'fork' in methods else None)
        in_queue, out_queue, stop = context.Queue(max_queue_size), context.Queue(), None
        pool = [context.Process(target=_worker_loop, args=(func, in_queue, out_queue, s, None),
                                daemon=True) for s in seeds]
    for worker in pool:
        worker.start()

    def check_alive():
        # workers only end when told to, so a dead one took its current item with it
        dead = [k for k, w in enumerate(pool) if not w.is_alive()]
        if dead:
            raise RuntimeError('parallel_apply: worker(s) %s stopped (killed, out of memory?) before '
                               'all results came back' % dead)

    def receive(block):
        """One finished result (or None when not blocking and nothing is ready)."""
        while True:
            try:
                message = out_queue.get(timeout=_POLL_S if block else 0.001)
            except queue.Empty:
                if not block:
                    return None
                check_alive()
                continue
            index, ok, value = message if dummy else pickle.loads(message)
            if not ok:
                error, trace = value
                raise RuntimeError('parallel_apply: func raised %s on item %d; worker traceback:\n%s'
                                   % (error, index, trace))
            return index, value

    pending = 0
    try:
        for index, item in enumerate(iterable):
            while True:
                try:
                    in_queue.put((index, item), timeout=_POLL_S)
                    break
                except queue.Full:
                    # the workers are busy: hand back a result while waiting (frees the caller too)
                    result = receive(block=False)
                    if result is not None:
                        pending -= 1
                        yield result
                    else:
                        check_alive()
            pending += 1
            while True:  # pass on whatever is already done, without waiting
                result = receive(block=False)
                if result is None:
                    break
                pending -= 1
                yield result
        while pending:
            pending -= 1
            yield receive(block=True)
    finally:
        if dummy:
            stop.set()
            for worker in pool:
                worker.join()
        else:
            for worker in pool:
                worker.terminate()
            for worker in pool:
                worker.join()
            for q in (in_queue, out_queue):
                q.close()
                q.cancel_join_thread()


def parallel_apply(func, iterable, workers, max_queue_size, callback=None, dummy=False,
                   random_seeds=True, unordered=True):
    """Apply ``func`` to every item of ``iterable`` with ``workers`` processes (or threads).

    Args:
        func, iterable, workers, max_queue_size, dummy, random_seeds: see
            :func:`parallel_apply_generator`.
        callback: if given, called with each result as it completes, and nothing is returned.
        unordered: True (bert4keras' default) -> results in completion order; False -> in input
            order. Only used without ``callback``.

    Returns:
        list of ``func(item)`` results, or None with a ``callback``.
    """
    generator = parallel_apply_generator(func, iterable, workers, max_queue_size, dummy,
                                         random_seeds)
    if callback is not None:
        for _, result in generator:
            callback(result)
        return None
    if unordered:
        return [result for _, result in generator]
    return [result for _, result in sorted(generator, key=lambda pair: pair[0])]
