"""The osmand sink: each position POSTed to a Traccar server in the OsmAnd form its decoder reads.

One request per position: ``POST <url>?id=<device>&timestamp=<unix s>&lat=..&lon=..&speed=<knots>
&bearing=..&altitude=..&accuracy=..&batt=..&alarm=..&driverUniqueId=..&valid=..&<attribute>=<value>...``
(Traccar listens for OsmAnd on port 5055; the device must exist in Traccar under the same identifier).
Speed goes in knots, as Traccar's OsmAnd decoder expects; every other attribute of the report is an
extra parameter under its own name (booleans as ``true``/``false``, lists and tables as JSON).

Reports without a position (login, heartbeat, status without a fix) are acknowledged without being
sent: the OsmAnd form has no way to carry them.

Several devices are sent to at once (``concurrency``); each device's positions are sent one after the
other, in order. The retry rules are the http sink's: 2xx delivers, timeouts, connection errors, 408,
429 and 5xx are retried with backoff (honouring ``Retry-After``), any other 4xx (Traccar answers 400
for a device it does not know) parks the position in the dead-letter table (``relay requeue``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import trio

from drivers.osmand import encode_position

from ..config import OsmandSinkSettings
from ..journal import Journal, StoredReport
from ..logs import log_event
from ._http import REQUEUE_POLL_S, RETRY, PostingSink, retry_requeued

log = logging.getLogger("relay.osmand")

FORM_TYPE = "application/x-www-form-urlencoded"
def osmand_query(document: dict[str, Any]) -> str | None:
    """The OsmAnd query string for a normalized report, or None when it has no position."""
    params = encode_position(document)
    return urlencode(params) if params is not None else None


class OsmandSink(PostingSink):
    """Positions to a Traccar OsmAnd endpoint, devices in parallel, each device in order."""

    def __init__(self, settings: OsmandSinkSettings, journal: Journal) -> None:
        super().__init__(settings, journal, window=settings.inflight)
        self.settings: OsmandSinkSettings = settings
        self._rewind_wanted = False

    async def _pump(self, client: httpx.AsyncClient) -> None:
        limiter = trio.CapacityLimiter(self.settings.concurrency)
        next_requeue_check = 0.0
        while True:
            if trio.current_time() >= next_requeue_check:
                await retry_requeued(self.name, self.journal, self.poster, client, self._letter_request)
                next_requeue_check = trio.current_time() + REQUEUE_POLL_S
            reports = self.delivery.take()
            if not reports:
                with trio.move_on_at(next_requeue_check):
                    await self.delivery.wait_for_work()
                continue
            per_device: dict[str | None, list[StoredReport]] = defaultdict(list)
            for report in reports:
                per_device[report.device_id].append(report)
            self._rewind_wanted = False
            async with trio.open_nursery() as nursery:
                for chain in per_device.values():
                    nursery.start_soon(self._send_chain, client, chain, limiter, nursery.cancel_scope)
            if self._rewind_wanted:
                # live_first: after an outage, each device's newest position goes first again.
                self.delivery.rewind()

    async def _send_chain(
        self,
        client: httpx.AsyncClient,
        chain: list[StoredReport],
        limiter: trio.CapacityLimiter,
        window: trio.CancelScope,
    ) -> None:
        async with limiter:
            for report in chain:
                query = osmand_query(report.document)
                if query is None:
                    self.stats.skipped += 1  # acknowledged without a request (no position)
                elif not await self._send(client, report, query):
                    self._rewind_wanted = True
                    window.cancel()
                    return
                self.delivery.acknowledge((report.seq,))

    async def _send(self, client: httpx.AsyncClient, report: StoredReport, query: str) -> bool:
        """Deliver or park one position; False: not done (live_first re-takes newest first)."""
        self.stats.published += 1
        live_first = self.settings.drain == "live_first"
        refused = await self.poster.send(client, self._request(client, query), reports=1, once=live_first)
        if refused is RETRY:
            return False
        if refused is None:
            return True
        letter = await trio.to_thread.run_sync(
            lambda: self.journal.park(
                self.name,
                [report.seq],
                status=refused.status,
                answer=refused.answer,
                body=query.encode(),
                content_type=FORM_TYPE,
            )
        )
        self.stats.dead_lettered += 1
        log_event(
            log,
            logging.ERROR,
            "osmand_position_refused",
            sink=self.name,
            device_id=report.device_id,
            status=refused.status,
            answer=refused.answer[:200],
            dead_letter=letter,
            hint="is the device known to Traccar by this id? `relay dead-letters`, then `relay requeue`",
        )
        return True

    def _request(self, client: httpx.AsyncClient, query: str) -> Callable[[], httpx.Request]:
        endpoint = self.settings.endpoint
        separator = "&" if "?" in endpoint else "?"
        url = f"{endpoint}{separator}{query}"
        return lambda: client.build_request("POST", url)

    def _letter_request(
        self, client: httpx.AsyncClient, letter: dict[str, Any]
    ) -> Callable[[], httpx.Request]:
        return self._request(client, bytes(letter["body"]).decode())
