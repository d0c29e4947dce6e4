"""What every sink is made of: its settings and name, the journal, its durable position
(:class:`Delivery`), its statistics, and what the app and the status page read of it."""

from __future__ import annotations

import trio

from ..config import SinkSettings
from ..journal import Journal
from ._delivery import Delivery
from ._statistics import SinkStatistics


class Sink:
    """A sink: subclasses deliver in :meth:`run`, and set :attr:`connected` and :attr:`last_error`."""

    #: While the sink is connected to its server.
    connected: bool = False
    #: Why the last attempt failed (None after a success).
    last_error: str | None = None

    def __init__(self, settings: SinkSettings, journal: Journal, *, window: int) -> None:
        """``window``: how many reports may be in flight at once (see :class:`Delivery`)."""
        self.settings = settings
        self.name = settings.name
        self.journal = journal
        #: What the sink counted since start (``/metrics``).
        self.stats = SinkStatistics()
        self.delivery = Delivery(
            journal, self.name, window=window, drain=settings.drain, start=settings.start, stats=self.stats
        )

    @property
    def acknowledged(self) -> int:
        """Reports delivered since start."""
        return self.stats.delivered

    @property
    def floor(self) -> int:
        """Every report with ``seq <= floor`` is delivered."""
        return self.delivery.floor

    @property
    def last_delivery(self) -> float | None:
        """``time.monotonic()`` of the last acknowledged report since start (None: none yet)."""
        return self.delivery.last_delivery

    def backlog(self) -> int:
        """Reports committed and not yet delivered (an upper bound while some are in flight)."""
        return self.delivery.backlog()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver forever, reconnecting as needed; ``task_status.started()`` once running."""
        raise NotImplementedError
