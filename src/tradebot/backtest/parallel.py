"""One way to run independent backtest tasks: in this process, on local processes, or on a Dask cluster.

Day tasks (tick data) and quarter segments (bar data) differ in what a task is, not in how they are spread over
cores, so both commands share this loop and its progress callback (called in completion order, from this process).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_tasks(fn: Callable[[T], R], tasks: Sequence[T], workers: int = 0, scheduler: str | None = None,
              on_done: Callable[[int, R], None] | None = None) -> list[R]:
    """Results in completion order. ``workers`` 0 = one process per core (at most one per task), 1 = in this
    process; ``scheduler`` a Dask scheduler address (``tcp://host:8786``) instead of local processes."""
    results: list[R] = []

    def done(r: R) -> None:
        results.append(r)
        if on_done is not None:
            on_done(len(results), r)

    if scheduler:
        from distributed import Client
        from distributed import as_completed as dask_completed

        with Client(scheduler) as client:  # type: ignore[no-untyped-call]
            futures = client.map(fn, list(tasks), pure=False)
            for fut in dask_completed(futures):  # type: ignore[no-untyped-call]
                done(fut.result())
    elif len(tasks) <= 1 or workers == 1:
        for task in tasks:
            done(fn(task))
    else:
        n = workers or min(len(tasks), os.cpu_count() or 1)
        with ProcessPoolExecutor(max_workers=n) as pool:
            futs = [pool.submit(fn, t) for t in tasks]
            for f in as_completed(futs):
                done(f.result())
    return results
