"""A sink's place in the journal: what is delivered, what is in flight, what to send next.

Every sink (MQTT, HTTP, OsmAnd, passthrough) uses one :class:`Delivery`. It hands out committed
reports in ``seq`` order, skipping what this sink already delivered, and keeps per device the newest
report delivered without a gap before it. That position is durable: it is saved in the journal every
:data:`CURSOR_FLUSH_S`, or as soon as a whole window has been acknowledged, so after a crash a sink
re-sends at most twice its in-flight window. Delivery is therefore at least once, per device
in order, and one sink's position never holds another back.

Drain orders (``drain`` in a sink's config):

- ``in_order`` (default): oldest first, per device in the order the reports were received;
- ``live_first``: after each (re)connection, every device's newest undelivered report first, then the
  rest of the backlog oldest first.

Where a sink new to the journal begins (``start``): ``oldest`` (default), everything the journal still
keeps; ``now``, after the journal's newest report, a position saved at once. A sink that saved a
position keeps it, whatever ``start`` says.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable

import trio

from ..config import Drain, Start
from ..journal import FRAME_EVENT, CursorUpdate, Journal, StoredReport
from ..logs import log_event
from ._statistics import SinkStatistics

log = logging.getLogger("relay.delivery")

#: Longest time an acknowledged position stays unsaved (fewer SD-card writes than one per ack).
CURSOR_FLUSH_S = 0.5
#: The most rows one :meth:`Delivery.take` looks at.
MAX_SCAN = 2000
#: The most rows one journal query reads ahead: :meth:`Delivery.take` hands them out from memory, so
#: a drain costs one query per page instead of one per acknowledgement.
READ_AHEAD_ROWS = 500
#: About how many bytes the rows read ahead may hold: a page of photos is made shorter to fit.
READ_AHEAD_BYTES = 1 << 20
#: A streaming sink's pump (:meth:`Delivery.wake_on_part`) is woken when this part of its window is
#: free, not for every acknowledgement: one wake-up then sends a batch, while 9/10 of the window is
#: still in flight, so it never runs dry.
WAKE_FRACTION = 10


class Delivery:
    """Hand out, track and remember one sink's reports. Not thread-safe: use from the trio thread."""

    def __init__(
        self,
        journal: Journal,
        sink: str,
        *,
        window: int,
        drain: str = Drain.IN_ORDER,
        start: str = Start.OLDEST,
        stats: SinkStatistics | None = None,
    ) -> None:
        """:raises ValueError: ``drain`` or ``start`` is not one of its values."""
        self.journal = journal
        self.sink = sink
        self.window = window
        self.drain = Drain(drain)
        start = Start(start)
        floor, cursors = journal.load_cursors(sink)
        new = not journal.has_position(sink)
        from_now = start is Start.NOW and new
        if from_now:
            floor = journal.last_seq
        #: Every report with ``seq <= floor`` is delivered.
        self.floor = floor
        #: Per device, the newest delivered ``seq`` with nothing undelivered before it.
        self.cursors: dict[str, int] = cursors
        #: Counts reports delivered and those in flight when a connection failed (may arrive twice).
        self.stats = stats or SinkStatistics()
        #: ``time.monotonic()`` when a report was last acknowledged (delivered or dead-lettered);
        #: None before the first since start.
        self.last_delivery: float | None = None
        self._flush_threshold = max(window, 1)
        #: Free places in the window that wake a waiting pump (see :meth:`wake_on_part`).
        self._wake_room = 1
        #: Rows of the next read-ahead query: starts at a window, grows while rows are small.
        self._page = max(window, 1)
        self._changed = trio.Event()
        self._flush_wanted = trio.Event()
        self._dirty: dict[str, int] = {}
        self._floor_dirty = False
        self._acked_since_flush = 0
        self.rewind()
        # Saved at once: after a restart the sink goes on from here, not from a later "now"; and the
        # journal knows its sinks (``relay status`` without a config shows their backlogs).
        if new:
            self._floor_dirty = True
            self.save_now()
        journal.on_append(self._wake)

    def _wake(self) -> None:
        self._changed.set()

    def wake_on_part(self) -> None:
        """Make :meth:`wait_for_work` wait until a tenth of the window is free (WAKE_FRACTION), not one
        place: for a sink that streams (MQTT, OsmAnd), where one wake-up per acknowledgement would
        cost more than the sending. A sink that batches on its own (HTTP) keeps one place."""
        self._wake_room = max(1, self.window // WAKE_FRACTION)

    # -- handing out ----------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def rewind(self) -> None:
        """Forget what is in flight (the connection is gone): it will be handed out again."""
        if getattr(self, "_inflight", None):
            self.stats.duplicates_possible += len(self._inflight)
        self._inflight: dict[int, str] = {}
        self._pending: dict[str, deque[int]] = {}
        self._acked: set[int] = set()
        self._early: set[int] = set()
        #: Everything up to here was handed out, skipped or found delivered; the reports read after
        #: it and not yet handed out are in ``_ahead`` (in ``seq`` order, up to ``_fetched_pos``).
        self._read_pos = self.floor
        self._ahead: deque[StoredReport] = deque()
        self._fetched_pos = self.floor
        self._live_done = self.drain is not Drain.LIVE_FIRST

    def take(self, limit: int | None = None) -> list[StoredReport]:
        """Up to ``limit`` (default: the free part of the window) undelivered reports, now in flight."""
        room = (
            self.window - len(self._inflight)
            if limit is None
            else min(limit, self.window - len(self._inflight))
        )
        if room <= 0:
            return []
        reports: list[StoredReport] = []
        frames: list[int] = []
        if not self._live_done:
            reports = self._take_newest(room)
            room -= len(reports)
        scanned = 0
        # Rows this sink skips (frames kept for passthrough) take no room: look at most so many per
        # call, so a long run of them never holds the event loop (the caller comes back for more).
        ahead = self._ahead
        cursors = self.cursors
        early = self._early
        while room > 0 and scanned < MAX_SCAN:
            if not ahead and not self._read_ahead():
                break
            report = ahead.popleft()
            scanned += 1
            self._read_pos = report.seq
            if early and report.seq in early:
                early.discard(report.seq)
                continue
            if report.seq <= cursors.get(report.device_id or "", 0):
                continue  # delivered before this (re)connection
            self._track(report)
            if report.event == FRAME_EVENT:  # kept for passthrough only: nothing to send here
                frames.append(report.seq)
                continue
            reports.append(report)
            room -= 1
        if frames:
            self.acknowledge(frames)
            self.stats.delivered -= len(frames)
        return reports

    def _read_ahead(self) -> bool:
        """Read the next page of committed reports into ``_ahead``; False when there is none."""
        batch = self.journal.read_after(self._fetched_pos, self._page)
        if not batch:  # perhaps only unreadable reports are left: go past them
            # Nothing is read ahead here, so the handed-out position is where the reading stopped.
            self._read_pos = self._fetched_pos = self.journal.skip_unreadable(self._fetched_pos)
            return False
        self._ahead.extend(batch)
        self._fetched_pos = batch[-1].seq
        size = sum(
            len(report.payload) + len(report.media or b"") + len(report.raw or b"") for report in batch
        )
        fits = READ_AHEAD_BYTES * len(batch) // max(size, 1)
        self._page = max(self.window, 1, min(READ_AHEAD_ROWS, fits))
        return True

    def _take_newest(self, room: int) -> list[StoredReport]:
        newest = self.journal.newest_per_device(after=self._read_pos)
        taken: list[StoredReport] = []
        for report in newest:
            if len(taken) >= room:
                return taken  # the rest on the next call
            if (
                report.event == FRAME_EVENT
                or report.seq in self._early
                or report.seq <= self.cursors.get(report.device_id or "", 0)
            ):
                continue
            self._early.add(report.seq)
            self._track(report)
            taken.append(report)
        self._live_done = True
        return taken

    def _track(self, report: StoredReport) -> None:
        device = report.device_id or ""
        self._inflight[report.seq] = device
        queue = self._pending.setdefault(device, deque())
        if queue and queue[-1] > report.seq:  # live_first: an early newest report sorts in later
            queue.append(report.seq)
            self._pending[device] = deque(sorted(queue))
        else:
            queue.append(report.seq)

    # -- acknowledging --------------------------------------------------------------------------

    def acknowledge(self, seqs: Iterable[int]) -> None:
        """These reports are delivered (PUBACK, HTTP 2xx, written upstream, or dead-lettered)."""
        self.last_delivery = time.monotonic()
        for seq in seqs:
            device = self._inflight.pop(seq, None)
            if device is None:
                continue
            self.stats.delivered += 1
            self._acked.add(seq)
            queue = self._pending[device]
            while queue and queue[0] in self._acked:
                done = queue.popleft()
                self._acked.discard(done)
                self.cursors[device] = done
                self._dirty[device] = done
            if not queue:
                del self._pending[device]
            self._acked_since_flush += 1
        self._advance_floor()
        if self._acked_since_flush >= self._flush_threshold:
            self._flush_wanted.set()
        if self.window - len(self._inflight) >= self._wake_room:
            self._changed.set()

    def acknowledge_device(self, device: str, seq: int) -> None:
        """Everything of ``device`` up to ``seq`` is delivered: for senders that read each device's
        reports themselves (passthrough) instead of through :meth:`take`. Call in order per device."""
        if seq <= self.cursors.get(device, 0):
            return
        self.last_delivery = time.monotonic()
        self.cursors[device] = seq
        self._dirty[device] = seq
        self.stats.delivered += 1
        self._acked_since_flush += 1
        if self._acked_since_flush >= self._flush_threshold:
            self._flush_wanted.set()

    def raise_floor(self, floor: int) -> None:
        """Everything up to ``floor`` is delivered (the per-device sender worked that out)."""
        if floor > self.floor:
            self.floor = floor
            self._floor_dirty = True

    def _advance_floor(self) -> None:
        if self._inflight or self._early:
            floor = min([*self._inflight, *self._early]) - 1
            floor = min(floor, self._read_pos)
        else:
            floor = self._read_pos
        if floor > self.floor:
            self.floor = floor
            self._floor_dirty = True

    # -- waiting --------------------------------------------------------------------------------

    async def wait_for_work(self) -> None:
        """Return once there is something to hand out and room for it: a new report committed (or the
        live-first pass still to do) and a free place in the window (a tenth of it after
        :meth:`wake_on_part`)."""
        self._advance_floor()
        if self._work_ready():
            await trio.lowlevel.checkpoint()
            return
        while not self._work_ready():
            self._changed = trio.Event()
            await self._changed.wait()

    def work_ready(self) -> bool:
        """Whether :meth:`wait_for_work` would return now (it may still :meth:`take` nothing when
        all that is left is skipped)."""
        return self._work_ready()

    def _work_ready(self) -> bool:
        if self.journal.last_seq <= self._read_pos and self._live_done:
            return False
        return self.window - len(self._inflight) >= self._wake_room

    def backlog(self) -> int:
        """Reports committed and not yet delivered (an upper bound while some are in flight)."""
        return max(self.journal.last_seq - self.floor, 0)

    # -- saving ---------------------------------------------------------------------------------

    async def run_flusher(self) -> None:
        """Save the position every CURSOR_FLUSH_S, or sooner once a window is acknowledged."""
        while True:
            with trio.move_on_after(CURSOR_FLUSH_S):
                while self._acked_since_flush < self._flush_threshold:
                    self._flush_wanted = trio.Event()
                    await self._flush_wanted.wait()
            await self.flush()

    def _take_update(self) -> CursorUpdate | None:
        if not self._dirty and not self._floor_dirty:
            return None
        update = CursorUpdate(self.sink, self.floor, self._dirty)
        self._dirty = {}
        self._floor_dirty = False
        self._acked_since_flush = 0
        return update

    def _restore(self, update: CursorUpdate) -> None:
        for device, seq in update.devices.items():
            self._dirty.setdefault(device, seq)
        self._floor_dirty = True

    async def flush(self) -> None:
        """Save the position through the journal's writer (shares its group commit)."""
        update = self._take_update()
        if update is None:
            return
        try:
            await self.journal.append([update])
        except Exception as error:  # the journal logged the cause; keep the changes for the next try
            self._restore(update)
            log_event(log, logging.WARNING, "cursor_not_saved", sink=self.sink, error=str(error))
        except BaseException:
            # Cancelled (the relay is stopping) before the commit: keep the changes for save_now,
            # or the restarted relay sends again everything delivered since the last save.
            self._restore(update)
            raise

    def save_now(self) -> None:
        """Save the position synchronously (on the way out, when the journal's writer may be gone)."""
        update = self._take_update()
        if update is None:
            return
        try:
            self.journal.write_now([update])
        except Exception as error:
            self._restore(update)
            log_event(log, logging.WARNING, "cursor_not_saved", sink=self.sink, error=str(error))
