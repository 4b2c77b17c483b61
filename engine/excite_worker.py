"""The excite worker: a thread that computes the excite rows of received note-ons off the audio thread.

With a look-ahead (``Synth(lookahead=L, excite_worker=True)``) a note-on received in one ``process`` call sounds L
samples later, in a later call. The audio thread only queues it (``synth_kernel.receive``) and wakes the worker
(one ``os.eventfd_write``); the worker looks the note-on's controls up in the excite cache, runs the excite graph
on the misses, copies the rows into their cache entries and pins them (what ``Synth`` does in the receiving call
without the worker), then writes the entry into the queued event. When the note sounds (``synth_kernel.due``) it
starts from that entry if the worker has written it, else it is excited late on the audio thread: the call's late
note-ons of an instrument run the graph together (:func:`late_rows`, into spare rows after the cache's entries
that only the audio thread uses), so a late worker costs time, never a sample (the rows are the same bits either way: the
graph is batch-invariant or run per row, engine/excite_cache.py). The audio thread never waits for the worker.

Who writes what (the race-free part):

* the queue's events are written by the audio thread when received; of a queued note-on the worker writes only
  its ENTRY, and only while the note has not been taken by ``due`` (its queue index >= ``consumed``);
* the excite cache (keys, use stamps, rows, pins) is written by the worker alone: the kernel's unpin goes to an
  array nobody reads (see ``synth._Part``), and the worker unpins the entries of the note-ons that sounded, which
  the audio thread reports by ``CONSUMED`` (the queue head after the call's notes started), so an entry is
  never replaced while a call may still start a voice from it;
* every compiled call that reads or writes this shared state holds the GIL (none of them is ``nogil``), and the
  Python reads and writes of ``shared`` do too, so the GIL orders them (CPython with the GIL, checked at import);
  the excite graph runs without the GIL on the worker's own input rows and on output rows the audio thread's
  strike graph does not use.

The worker starts at normal priority (a thread inherits its creator's SCHED_FIFO; the worker sets itself back to
SCHED_OTHER) on the CPUs of the thread that called ``prepare``, so on one pinned core its work is paid in the idle
part of each period. In real time (engine/realtime.py) two more rules keep it from making the audio callback wait
for the GIL, which the callback needs to run any Python at all:

* it is woken when the callback returns (``deferred``, :meth:`ExciteWorker.wake`), not when ``Synth.process``
  posts: the rest of the callback gives the GIL up (the effects chain does, in pedalboard), and a worker woken
  already on another core takes it then, and the callback waits to get it back;
* it follows the callback's thread (:meth:`ExciteWorker.follow`): its CPUs, and SCHED_FIFO one step below it when
  the callback runs at a real-time priority, so no ordinary process of the machine can preempt it while it holds
  the GIL (between two compiled calls) and leave the next callback waiting for as long as it is off the CPU.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time

import numba
import numpy as np

from engine import buffers
from engine import excite_cache as ec
from engine import synth_kernel as sk
from engine.kernel_cache import drop_stale_kernels

if getattr(sys, "_is_gil_enabled", lambda: True)():
    GIL = True
else:  # pragma: no cover - a free-threaded CPython: the ordering above does not hold
    raise ImportError("engine.excite_worker needs a CPython with the GIL (the free-threaded build is not supported)")

_eventfd_write = ctypes.PyDLL(None).eventfd_write  # libc's; PyDLL: the call keeps the GIL (see ExciteWorker.wake)
_eventfd_write.argtypes = [ctypes.c_int, ctypes.c_uint64]
_eventfd_write.restype = ctypes.c_int

CONSUMED, DONE, UNPINNED = range(3)
"""Entries of ``ExciteWorker.shared`` (int64): the queue head after the last call's notes started (written by the
audio thread), the queue index up to which the worker has handled note-ons, and up to which it has unpinned."""


@numba.njit(cache=True)
def gather(queue, state, shared, part_of, bits, row_event, rows, capacity, pinned,
           pins):  # pragma: no cover - compiled
    """First unpin the entries of the note-ons that sounded since the last call (queue indices from
    ``shared[UNPINNED]`` up to ``shared[CONSUMED]``: they started, or were struck, in calls that have returned);
    pinned: (queue, 2) int64 per queue slot the (part, entry) the worker pinned for it, (-1, -1) when none; pins:
    (parts, entries) int64. Then collect the note-ons received and not yet handled: their control bits into each
    part's ``bits`` rows and their queue index into ``row_event`` (parts, capacity), ``rows`` (parts,) counts.
    Starts at the last handled index (or the consumed head, if later: those sounded already, struck) and stops at
    the tail or at the first note-on of a part whose ``capacity`` rows are full; returns the index it stopped at.
    One compiled call, so the audio thread's ``CONSUMED`` cannot move in between."""
    size = queue.shape[0]
    consumed = shared[CONSUMED]
    for h in range(shared[UNPINNED], consumed):
        q = h % size
        if pinned[q, 0] >= 0:
            pins[pinned[q, 0], pinned[q, 1]] -= 1
            pinned[q, 0] = -1
            pinned[q, 1] = -1
    shared[UNPINNED] = consumed
    rows[:] = 0
    h = max(shared[DONE], consumed)
    tail = state[sk.TAIL]
    while h < tail:
        q = h % size
        channel = queue[q, sk.STATUS] & 0x0F
        part = part_of[channel]
        if (queue[q, sk.STATUS] & 0xF0 == 0x90 and queue[q, sk.DATA2] > 0 and part >= 0
                and queue[q, sk.ENTRY] != sk.DROPPED_ROW):
            r = rows[part]
            if r >= capacity:
                break
            bits[part, r, 0] = queue[q, sk.KEY0]
            bits[part, r, 1] = queue[q, sk.KEY1]
            row_event[part, r] = h
            rows[part] = r + 1
        h += 1
    return h


@numba.njit(cache=True)
def publish(outputs, cache_rows, pending, pins, source, n, row_event, queue, shared, pinned,
            part):  # pragma: no cover - compiled
    """After the graph ran on :func:`excite_cache.lookup`'s misses: copy each miss's row into its entry
    (``excite_cache.stage``'s copy), then give each gathered note-on that has not sounded yet its entry in the
    queue and pin it (``pinned`` records it for :func:`gather` to unpin). A note-on the audio thread took
    meanwhile gets no pin: it was struck."""
    ec.copy_pending(outputs, cache_rows, pending)
    size = queue.shape[0]
    for r in range(n):
        h = row_event[r]
        entry = source[r]
        if h < shared[CONSUMED] or entry < 0:
            continue
        q = h % size
        queue[q, sk.ENTRY] = entry
        pins[entry] += 1
        pinned[q, 0] = part
        pinned[q, 1] = entry


@numba.njit(cache=True)
def late_rows(events, n, part_of, part, controls, base, capacity, event_position,
              position_y):  # pragma: no cover - compiled
    """On the audio thread, after ``synth_kernel.due``: give this part's note-ons of the call that have no usable
    row (the worker had not served them, their controls changed, or the cache had no free entry) the spare rows
    ``base + r`` of the cache (``controls`` (base + capacity, 4) float32 gets each one's controls as the strike path
    would: note, velocity / 127, the position in effect, ``position_y``), marking them usable; returns how many (the
    graph then runs once on them all). Past ``capacity`` they keep the strike path."""
    r = 0
    for i in range(n):
        status = events[i, sk.STATUS]
        if (events[i, sk.USABLE] or events[i, sk.ENTRY] == sk.DROPPED_ROW or status & 0xF0 != 0x90
                or events[i, sk.DATA2] == 0 or part_of[status & 0x0F] != part):
            continue
        if r >= capacity:
            break
        row = controls[base + r]
        row[0] = events[i, sk.DATA1]
        row[1] = events[i, sk.DATA2] / 127.0
        row[2] = event_position[i]
        row[3] = position_y
        events[i, sk.ENTRY] = base + r
        events[i, sk.USABLE] = 1
        r += 1
    return r


class ExciteWorker:
    """The worker thread of one prepared ``Synth`` (see the module doc). ``start`` in ``Synth.prepare``, ``stop``
    in ``Synth.release``; ``post`` is the audio thread's only call."""

    def __init__(self, synth):
        self.synth = synth
        parts = len(synth.parts)
        self.shared = np.zeros(3, np.int64)
        self.pinned = np.full((synth._queue.shape[0], 2), -1, np.int64)
        # every part's pins in one array, so that one compiled call unpins them all: the caches use rows of it
        self.pins = np.zeros((parts, max([part.cache.entries for part in synth.parts] + [1])), np.int64)
        for part in synth.parts:
            part.cache.pins = self.pins[part.index, : part.cache.entries]
        self.rows = np.zeros(parts, np.int64)
        self.row_event = np.zeros((parts, synth._row_event.shape[1]), np.int64)
        self.cpu_seconds = 0.0
        """CPU time (s) the worker thread has used so far."""
        self.handled = 0
        """Wake-ups handled so far (``drain`` waits for it to reach the posts)."""
        self.posts = 0
        self.deferred = False
        """False: ``post`` wakes the worker at once. True (real time, set by engine/realtime.py): ``post`` only counts
        the wake-up and the audio callback's last call, ``wake``, delivers it (see ``wake``)."""
        self._undelivered = 0
        self.held = threading.Event()  # set: the worker waits before handling (a test hook: every note is late)
        self._fd = os.eventfd(0)
        self._done = threading.Condition()
        self._stopping = False
        self._scheduled = threading.Event()  # set once the thread has chosen its starting policy (see follow)
        self._thread = threading.Thread(target=self._run, name="eigentone-excite-worker", daemon=True)
        self._warm_up()

    def _warm_up(self) -> None:
        """Load the compiled kernels for these arrays' types now (nothing queued yet: each call does nothing)."""
        synth, shared = self.synth, self.shared
        gather(synth._queue, synth._queue_state, shared, synth._part_of, synth._worker_bits, self.row_event,
               self.rows, self.row_event.shape[1], self.pinned, self.pins)
        for part in synth.parts:
            cache = part.cache
            publish(part.excite, cache.rows, cache.pending, cache.pins, cache.source, 0, self.row_event[part.index],
                    synth._queue, shared, self.pinned, part.index)

    def start(self) -> None:
        self._thread.start()

    def post(self) -> None:
        """Wake the worker (audio thread: one system call, no lock, nothing allocated), or with ``deferred`` only
        count the wake-up for ``wake``."""
        self.posts += 1
        if self.deferred:
            self._undelivered += 1
        else:
            os.eventfd_write(self._fd, 1)

    def wake(self) -> None:
        """Deliver the wake-ups ``post`` deferred: the audio callback's last call. The write keeps the GIL (libc's
        ``eventfd_write`` through ``ctypes.PyDLL``; ``os.eventfd_write`` gives the GIL up around the system call),
        so the worker, woken on another core, cannot take the GIL before the callback returns. Waking it from
        inside ``Synth.process`` instead let it take the GIL whenever the rest of the callback gave it up (the
        effects chain does, in pedalboard), and the callback then waited for the worker to give it back."""
        if self._undelivered:
            _eventfd_write(self._fd, self._undelivered)
            self._undelivered = 0

    def stop(self) -> None:
        """End the thread (pending note-ons are left unhandled: they are struck if they ever sound)."""
        self._stopping = True
        self.held.clear()
        os.eventfd_write(self._fd, 1)
        self._thread.join()
        os.close(self._fd)

    def follow(self, thread_id: int) -> str:
        """Run on the CPUs of the thread ``thread_id`` (a Linux thread id: the audio callback's) and, when that thread
        runs at SCHED_FIFO or SCHED_RR priority p > 1, at SCHED_FIFO p - 1 (the module doc says why). Returns what
        was done, for the caller to print; a refusal by the system (no permission) keeps the current placement and
        says so."""
        if not self._scheduled.wait(5.0):
            return "excite worker: not started"
        worker = self._thread.native_id
        try:
            cpus = os.sched_getaffinity(thread_id)
            os.sched_setaffinity(worker, cpus)
            policy, priority = os.sched_getscheduler(thread_id), os.sched_getparam(thread_id).sched_priority
        except OSError as exc:
            return f"excite worker: left where it was ({exc.strerror})"
        where = f"CPUs {','.join(map(str, sorted(cpus)))}"
        if policy not in (os.SCHED_FIFO, os.SCHED_RR) or priority <= 1:
            return f"excite worker: {where}, normal priority (the audio callback has no real-time priority)"
        try:
            os.sched_setscheduler(worker, os.SCHED_FIFO, os.sched_param(priority - 1))
        except OSError as exc:
            return f"excite worker: {where}, normal priority (SCHED_FIFO {priority - 1} refused: {exc.strerror})"
        return f"excite worker: {where}, SCHED_FIFO {priority - 1} (the audio callback's {priority} less one)"

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until the worker has handled every post so far (tests and offline use; never the audio thread)."""
        posts = self.posts
        with self._done:
            if not self._done.wait_for(lambda: self.handled >= posts or not self.alive, timeout):
                raise TimeoutError("the excite worker did not handle its posts in time")

    def _run(self) -> None:
        _normal_scheduling()
        self._scheduled.set()
        while True:
            wakes = os.eventfd_read(self._fd)  # blocks without the GIL; a count of the posts since the last read
            while self.held.is_set() and not self._stopping:
                time.sleep(0.001)
            if self._stopping:
                return
            self._handle()
            self.cpu_seconds = time.thread_time()
            with self._done:
                self.handled += wakes
                self._done.notify_all()

    def _handle(self) -> None:
        """Handle every note-on received so far (in rounds of at most ROWS per part)."""
        synth, shared, rows = self.synth, self.shared, self.rows
        while True:
            end = gather(synth._queue, synth._queue_state, shared, synth._part_of, synth._worker_bits,
                         self.row_event, rows, self.row_event.shape[1], self.pinned, self.pins)
            if end == shared[DONE]:
                return
            for part in synth.parts:
                n = int(rows[part.index])
                if not n:
                    continue
                cache = part.cache
                misses = ec.lookup(part.worker_controls, part.worker_bits, n, cache.keys, cache.used, cache.pins,
                                   cache.pending, cache.source, cache.stats)
                if misses:
                    part.excite_graph.run(misses)  # without the GIL, on the worker's rows only
                publish(part.excite, cache.rows, cache.pending, cache.pins, cache.source, n,
                        self.row_event[part.index], synth._queue, shared, self.pinned, part.index)
            shared[DONE] = end


def _normal_scheduling() -> None:
    """Back to SCHED_OTHER if the thread inherited a real-time policy (its CPUs stay its creator's)."""
    try:
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):  # pragma: no cover - platforms without these calls
        pass


drop_stale_kernels(gather, __file__, (buffers, ec, sk))  # they compile in code and constants of these modules
