"""Where the cells of a Monte Carlo grid or the slices of a key analysis run: here, or on a Dask cluster.

``executor="local"`` keeps the default paths: this process, or for the Monte Carlo a pool of worker
processes (:func:`process_pool_map`, joblib's loky executor: it never re-imports ``__main__``, so a plain
script, ``python -c``, stdin and notebooks need no ``if __name__ == "__main__":`` guard);
``executor="dask"`` sends chunks of work to a `Dask distributed <https://distributed.dask.org>`_ cluster:
the scheduler at `scheduler` (``tcp://host:8786``) or, without an address, a ``LocalCluster`` on loopback.
A ``distributed.Client`` may also be passed as the executor. Dask is an optional dependency
(``pip install "geomln[dask]"``), imported only here and only when a Dask executor is asked for.
"""

import contextlib
import os
import queue
import signal
import threading
import warnings
from concurrent.futures import FIRST_COMPLETED, CancelledError, wait

from ._validation import as_choice, as_positive_int
from .errors import ClusterError, DaskMissingError, InputError

__all__ = [
    "EXECUTORS",
    "ClusterError",
    "DaskMissingError",
    "DaskRunner",
    "chunk",
    "estimated_seconds",
    "import_distributed",
    "process_pool_map",
    "resolve_executor",
]

EXECUTORS = ("local", "dask")
#: what each Dask task should take at least, so that the scheduler's per-task overhead (~1 ms) stays small
TARGET_TASK_SECONDS = 0.2
#: retries of a task that raised (a worker that dies is handled by the scheduler, which reschedules its tasks)
TASK_RETRIES = 1
_EXTRA_HINT = 'install the optional extra: pip install "geomln[dask]"'


def resolve_executor(executor, scheduler, workers, *, warmup=None):
    """Validate ``executor``/``scheduler``/``workers``; return None for the local path, else a :class:`DaskRunner`.

    Parameters
    ----------
    executor : {"local", "dask"} or distributed.Client
    scheduler : str or None
        Address of a running Dask scheduler (only with ``"dask"``).
    workers : int or None
        Worker processes of a LocalCluster that ``"dask"`` starts when there is no `scheduler`.
    warmup : callable, optional
        Module-level function each Dask worker runs once before its first task (see :func:`warm_worker`);
        required for ``"dask"``.

    Returns
    -------
    DaskRunner or None
        Not yet connected: the connection is made when it is entered as a context manager.

    Raises
    ------
    InputError
        An unknown executor name (listing the choices), a `scheduler` with the local executor or with a
        Client, or `workers` together with `scheduler` (the cluster then decides).
    TypeError
        An executor that is neither a name nor a ``distributed.Client``, or a `scheduler` that is not a string.
    ImportError
        ``executor="dask"`` without dask installed (the message names the ``dask`` extra).

    Examples
    --------
    >>> from geomln.executors import resolve_executor
    >>> resolve_executor("local", None, 4) is None
    True
    >>> resolve_executor("local", "tcp://10.0.0.5:8786", None)
    Traceback (most recent call last):
    ...
    geomln.errors.InputError: `scheduler` 'tcp://10.0.0.5:8786' needs executor='dask' (got executor='local')
    """
    if scheduler is not None and not isinstance(scheduler, str):
        raise TypeError(
            f"`scheduler` must be an address string such as 'tcp://host:8786'; got "
            f"{type(scheduler).__name__} {scheduler!r}"
        )
    if scheduler is not None and not scheduler.strip():
        raise InputError("`scheduler` must be an address such as 'tcp://host:8786'; got an empty string")
    if _is_client(executor):
        if scheduler is not None:
            raise InputError(
                "`scheduler` is not used when `executor` is a distributed.Client (it is connected "
                f"to {executor.scheduler.address}); pass one of them"
            )
        if workers is not None:
            raise InputError(
                f"`workers` sets the size of a local Dask cluster; a distributed.Client brings its own workers. "
                f"Drop `workers` (got {workers})"
            )
        return DaskRunner(client=executor, warmup=warmup)
    if not isinstance(executor, str):
        raise TypeError(
            f"`executor` must be 'local', 'dask' or a distributed.Client; got {type(executor).__name__} {executor!r}"
        )
    as_choice(executor, "executor", EXECUTORS)
    if executor == "local":
        if scheduler is not None:
            raise InputError(f"`scheduler` {scheduler!r} needs executor='dask' (got executor='local')")
        return None
    import_distributed()
    if scheduler is not None and workers is not None:
        raise InputError(
            f"`workers` sets the size of a local Dask cluster; with `scheduler` {scheduler!r} the "
            f"cluster's own workers are used. Drop `workers` (got {workers})"
        )
    return DaskRunner(scheduler=scheduler, workers=workers, warmup=warmup)


def _is_client(value):
    return type(value).__name__ == "Client" and type(value).__module__.startswith("distributed")


def import_distributed():
    """Return the ``distributed`` module, or raise :class:`DaskMissingError` (an ImportError) naming the extra."""
    try:
        import distributed
    except ImportError as exc:
        raise DaskMissingError(
            f"`executor` 'dask' needs dask.distributed, which is not installed; {_EXTRA_HINT}"
        ) from exc
    return distributed


def estimated_seconds(n, calls, unit):
    """Rough cost of `calls` engine calls on `n` keys; `unit` is the measured time of one call at n = 40.

    The exact engine's time grows about linearly in n for random keys in moderate dimension (a fixed
    ~0.3 ms plus ~0.025 ms per key on the reference machine); the dimension matters less. The estimate only
    groups cheap cells into tasks: results never depend on it.

    Examples
    --------
    >>> from geomln.executors import estimated_seconds
    >>> estimated_seconds(92, 100, 0.001)  # 100 calls on 92 keys, at 1 ms per call on 40 keys
    0.2
    """
    return calls * unit * (12.0 + n) / 52.0


def chunk(items, costs, target=None):
    """Group `items` (most expensive first) into lists whose summed estimated cost reaches `target`.

    `target` defaults to ``TARGET_TASK_SECONDS`` (0.2 s).

    Parameters
    ----------
    items : sequence
    costs : sequence of float
        Estimated seconds of each item (:func:`estimated_seconds`).
    target : float, optional
        Seconds a chunk should reach; the last chunk may hold less.

    Returns
    -------
    list of list
        Every item exactly once; the chunks of expensive items come first, so that long tasks start early.

    Examples
    --------
    >>> from geomln.executors import chunk
    >>> chunk(["a", "b", "c", "d", "e"], [0.5, 0.05, 0.1, 0.12, 0.01], target=0.2)
    [['a'], ['d', 'c'], ['b', 'e']]
    """
    target = TARGET_TASK_SECONDS if target is None else target
    order = sorted(range(len(items)), key=lambda i: -costs[i])
    chunks, current, total = [], [], 0.0
    for i in order:
        current.append(items[i])
        total += costs[i]
        if total >= target:
            chunks.append(current)
            current, total = [], 0.0
    if current:
        chunks.append(current)
    return chunks


def process_pool_map(function, tasks, workers, initializer, initargs, *, on_idle=None, prepare=None):
    """Run ``function(*task)`` for every task in a pool of `workers` processes; yield ``(task, result)``.

    Results come in order of completion. The pool is joblib's loky executor: it never re-imports
    ``__main__`` (no ``if __name__ == "__main__":`` guard is needed in a script, ``python -c``, stdin or a
    notebook) and pickles with cloudpickle, so samplers defined in ``__main__`` or interactively reach the
    workers by value. The workers start with SIGINT ignored, so a Ctrl-C in a terminal (which reaches the
    whole process group) interrupts only this process; on any exception, and when the consumer closes the
    generator early (use :func:`contextlib.closing`), the workers are killed.

    Parameters
    ----------
    function : callable
        Importable in the workers (module level), or picklable by cloudpickle.
    tasks : sequence of tuple
        Submitted in this order.
    workers : int
    initializer : callable
        Run once in every worker with `initargs`.
    initargs : tuple
    on_idle : callable, optional
        Called every second in which no task finished (e.g. to redraw a progress bar).
    prepare : tuple of two callables, optional
        ``(side, here)``: ``side()`` is submitted first (which starts the workers) and runs in one of them,
        while ``here(future)`` runs in this process with side's future; the tasks are submitted once ``here``
        returned. E.g. compile two parts of the kernels every task needs, once each and in parallel, while
        the workers start: the tasks then load them from the cache.

    Yields
    ------
    tuple
        ``(task, function(*task))``.

    Raises
    ------
    concurrent.futures.process.BrokenProcessPool
        A worker died (killed, out of memory, a crash in compiled code).

    Examples
    --------
    >>> import operator
    >>> from geomln.executors import process_pool_map
    >>> sorted(process_pool_map(operator.mul, [(2, 3), (4, 5)], 2, int, ()))
    [((2, 3), 6), ((4, 5), 20)]
    """
    from joblib.externals.loky import ProcessPoolExecutor

    executor = ProcessPoolExecutor(max_workers=workers, initializer=initializer, initargs=initargs)
    try:
        if prepare is not None:
            side, here = prepare
            with _children_ignore_sigint():  # the first submit spawns every worker
                side_future = executor.submit(side)
            here(side_future)
        with _children_ignore_sigint():
            pending = {executor.submit(function, *task): task for task in tasks}
        while pending:
            finished, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            if not finished and on_idle is not None:
                on_idle()
            for future in finished:
                yield pending.pop(future), future.result()
    except BaseException:
        _shut_down(executor, kill=True)
        raise
    _shut_down(executor, kill=False)


#: how long to wait for the call queue's feeder thread once the pool is shut down; it has its sentinel by
#: then and ends at once unless a task too large for the pipe is still being written to killed workers
_FEEDER_JOIN_SECONDS = 10.0


def _shut_down(executor, *, kill):
    """Shut `executor` down and wait for its threads; with `kill`, cancel the waiting tasks and kill the workers.

    loky's manager thread drops every pending task when it sees ``kill_workers=True``, then takes the next
    task id from its queue and raises ``KeyError`` (printed as a thread traceback, with a leaked semaphore)
    if that queue is not empty, as it is when more tasks were submitted than the workers can hold. Emptying
    the queue first, as CPython's own executor does on ``cancel_futures=True``, closes the race: no task is
    submitted after this point, and the manager thread consumes the queue only in its own loop.

    loky does not join the call queue's feeder thread (a daemon thread) for a queue this process created.
    That thread holds the queue's semaphores, so when it ends last it unlinks them in its own time; if the
    interpreter exits meanwhile, the unlink happens but the resource tracker never hears of it and prints
    "leaked semlock objects" and a FileNotFoundError on stderr (caught by the test suite). Joining the
    thread while the queue is still referenced here leaves the semaphores to this thread.
    """
    call_queue = getattr(executor, "_call_queue", None)
    if kill:
        work_ids = getattr(executor, "_work_ids", None)
        while work_ids is not None and not work_ids.empty():
            with contextlib.suppress(queue.Empty):
                work_ids.get_nowait()
    executor.shutdown(wait=True, kill_workers=kill)
    feeder = getattr(call_queue, "_thread", None)
    if feeder is not None:
        feeder.join(_FEEDER_JOIN_SECONDS)


@contextlib.contextmanager
def _children_ignore_sigint():
    """Ignore SIGINT while worker processes start, so that they inherit the ignored disposition.

    CPython keeps SIGINT ignored in a process that starts with it ignored. Outside the main thread, where
    signal handlers cannot be changed, this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# ---- worker side -------------------------------------------------------------------------------------
_WARM_LOCK = threading.Lock()
_WARM = {}


def warm_worker(warmup):
    """Run ``warmup()`` once per worker process; return (warm-up seconds, unit seconds).

    `warmup` (module level, from the concept that runs: e.g. the Monte Carlo's cells) compiles or loads the
    kernels its tasks use and returns ``(seconds it took, unit)``, the unit being the measured time of one
    reference engine call (the cost model's scale). A second call in the same process returns
    ``(0.0, the stored unit)``.
    """
    with _WARM_LOCK:
        if warmup not in _WARM:
            _WARM[warmup] = warmup()
            return _WARM[warmup]
        return 0.0, _WARM[warmup][1]


def shared_value(value):
    """Dask task holding a value every chunk needs: recomputable, unlike scattered data, if its worker dies."""
    return value


def run_chunk(function, shared, items, warmup):
    """Dask task: ``[function(*shared, *item) for item in items]`` and the warm-up seconds it needed."""
    warm, _ = warm_worker(warmup)
    return [function(*shared, *item) for item in items], warm


# ---- client side -------------------------------------------------------------------------------------
class DaskRunner:
    """A Dask client for one run: connects (or starts a LocalCluster) on enter, closes what it started on exit.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler; None starts a ``LocalCluster`` on 127.0.0.1 with `workers`
        single-threaded worker processes (default ``os.cpu_count()``) and the dashboard on a free port.
    workers : int, optional
    client : distributed.Client, optional
        An existing client (left open on exit).
    warmup : callable
        Run once in every worker (:func:`warm_worker`): compiles the kernels, measures the unit.

    Attributes
    ----------
    client : distributed.Client
    description : dict
        ``executor``, ``scheduler``, ``dask_workers`` and (after :meth:`run`) ``tasks``, for the provenance.
    warm_seconds : float
        Summed warm-up time of the workers.
    unit_seconds : float
        Median measured time of one reference engine call on the workers (scales the cost model).
    """

    def __init__(self, *, scheduler=None, workers=None, client=None, warmup=None):
        self.scheduler = scheduler
        self.workers = None if workers is None else as_positive_int(workers, "workers")
        self.client = client
        self.warmup = warmup
        self._owned = []
        self.warm_seconds = 0.0
        self.unit_seconds = 1e-3
        self.description = {}

    def __enter__(self):
        distributed = import_distributed()
        try:
            if self.client is None and self.scheduler is not None:
                self.client = distributed.Client(self.scheduler, set_as_default=False)
                self._owned.append(self.client)
            elif self.client is None:
                cluster = distributed.LocalCluster(
                    n_workers=self.workers or os.cpu_count() or 1,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",
                )
                self._owned.append(cluster)
                self.client = distributed.Client(cluster, set_as_default=False)
                self._owned.insert(0, self.client)
            warm = self.client.run(warm_worker, self.warmup)
        except (OSError, TimeoutError) as exc:
            self.__exit__(None, None, None)
            where = f"the Dask scheduler at `scheduler` {self.scheduler!r}" if self.scheduler else "Dask"
            raise ClusterError(
                f"cannot connect to {where}: {_one_line(exc)}. Start one with `dask scheduler` (and "
                "`dask worker tcp://host:8786` on each machine), or omit `scheduler` for a "
                "local cluster"
            ) from None
        except BaseException:
            self.__exit__(None, None, None)
            raise
        if not warm:
            address = self.client.scheduler.address
            self.__exit__(None, None, None)
            raise ClusterError(
                f"the Dask scheduler at {address} has no workers; start some with `dask worker {address}`"
            )
        units = sorted(unit for _, unit in warm.values())
        self.warm_seconds = sum(seconds for seconds, _ in warm.values())
        self.unit_seconds = units[len(units) // 2]
        self.description = {"executor": "dask", "scheduler": self.client.scheduler.address, "dask_workers": len(warm)}
        return self

    def __exit__(self, *exc_info):
        for thing in self._owned:
            thing.close()
        self._owned = []
        return False

    def run(self, function, chunks, shared=()):
        """Run every chunk as one task; yield ``(chunk, results)`` in order of completion.

        `shared` (e.g. the Monte Carlo context with its key pool) goes to the scheduler once, as a task of
        its own rather than scattered data, so that it is recomputed when the workers holding it die. Failures
        of the cluster raise :class:`ClusterError`; errors raised by `function` propagate unchanged.
        """
        distributed = import_distributed()
        client = self.client
        chunks = list(chunks)
        self.description["tasks"] = len(chunks)
        futures = {}
        failed = None
        try:
            with warnings.catch_warnings():  # a large key pool is sent once, on purpose
                warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
                shared_futures = [client.submit(shared_value, value, pure=False) for value in shared]
            for items in chunks:
                future = client.submit(run_chunk, function, shared_futures, items, self.warmup, retries=TASK_RETRIES,
                                       pure=False)
                futures[future] = items
            for future in distributed.as_completed(futures, loop=client.loop):
                if future.status == "error" and not isinstance(future.exception(), distributed.KilledWorker):
                    futures.pop(future)  # the task's own error (even an OSError): not a cluster failure
                    failed = future.exception(), future.traceback()
                    break
                results, warm = future.result()
                self.warm_seconds += warm
                yield futures.pop(future), results
        except distributed.KilledWorker as exc:
            raise ClusterError(
                f"a task kept killing Dask workers and was given up ({_one_line(exc)}); look at the workers' logs "
                "(out of memory?)"
            ) from None
        except (distributed.comm.CommClosedError, OSError, TimeoutError, CancelledError) as exc:
            raise ClusterError(
                f"lost the Dask cluster at {self.description.get('scheduler')} ({type(exc).__name__}: {_one_line(exc)})"
            ) from None
        finally:
            if futures:
                client.cancel(list(futures))
        if failed is not None:
            raise failed[0].with_traceback(failed[1])


def _one_line(exc):
    return " ".join(str(exc).split())
