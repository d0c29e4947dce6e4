"""The http sink: committed reports POSTed to a central server as JSON batches, until it answers 2xx.

A batch is ``{"site": "...", "reports": [<normalized report>, ...]}`` (``Content-Type:
application/json``, optionally gzip-compressed), oldest first, at most ``batch_max_reports`` reports
and ``batch_max_bytes`` bytes, sent when full or when its first report has waited ``batch_max_age_s``.
Each report keeps its stable ``id``, so the server can drop the duplicates that at-least-once delivery
brings. One batch is in flight at a time, so every device's reports arrive in order.

What the server's answer means:

- 2xx: the batch is delivered;
- a timeout (a read, write or connect slower than ``timeout_s``, or a whole request, answer included,
  slower than ``request_deadline_s``), a connection error, 408, 429, 5xx (or any other non-4xx
  answer): the same batch is sent again after an exponential backoff with jitter (growing until a
  2xx), or after the server's ``Retry-After``;
- any other 4xx: the server will never take this batch. It is parked in the journal's dead-letter table
  with the server's answer, and the sink moves on. ``relay dead-letters`` lists them; ``relay requeue``
  sends them again (the running sink picks them up within :data:`REQUEUE_POLL_S`).

Of any answer at most :data:`ANSWER_MAX_BYTES` are read (a 300 MB error page costs nothing); the
connection is then closed. Credentials in the URL (``https://user:password@host/``) are sent as HTTP
basic auth and never logged.

The request plumbing (:class:`Poster`) is shared with the osmand sink.
"""

from __future__ import annotations

import codecs
import contextlib
import enum
import gzip
import json
import logging
import ssl
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import trio

from ..config import HttpSinkSettings, OsmandSinkSettings
from ..journal import Journal, StoredReport
from ..logs import log_event
from ._base import Sink
from ._retry import Uplink, address_of, backoff_delay
from ._statistics import SinkStatistics

log = logging.getLogger("relay.http")
# httpx logs every request's URL at INFO; the relay logs what matters itself, without credentials.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

#: How often a sink looks for dead letters that ``relay requeue`` marked for sending again.
REQUEUE_POLL_S = 2.0
#: Longest wait a server's ``Retry-After`` can impose (a typo there must not stall a sink for days).
RETRY_AFTER_MAX_S = 3600.0
#: Statuses that mean "later", not "never".
RETRYABLE_4XX = (408, 429)
#: Characters of a server's answer kept for logs and dead letters.
ANSWER_CHARS = 2000
#: Bytes of a server's answer read at most; the rest is never read (the connection is closed).
ANSWER_MAX_BYTES = 64 * 1024
#: Time to close a connection after a request was given up on.
CLOSE_TIMEOUT_S = 1.0
JSON_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class Refused:
    """The server's final "no" (a 4xx other than 408/429)."""

    status: int
    answer: str


class Retry(enum.Enum):
    """The request failed and was not tried again (``once``)."""

    RETRY = "retry"


RETRY = Retry.RETRY


class Poster:
    """Sends one request until the server takes it (2xx) or refuses it for good (:class:`Refused`).

    Retries forever in between, with backoff and jitter, honouring ``Retry-After``. Keeps the sink's
    connection state and counters.
    """

    def __init__(
        self,
        sink: str,
        settings: HttpSinkSettings | OsmandSinkSettings,
        stats: SinkStatistics | None = None,
    ) -> None:
        self.sink = sink
        self.settings = settings
        host, port = address_of(settings.endpoint, 443 if settings.endpoint.startswith("https:") else 80)
        #: Cuts the backoff short when the server, unreachable, can be reached again.
        self.uplink = Uplink(host, port, probe_interval_s=settings.probe_interval_s)
        #: Counts the retries and the reports that may arrive twice.
        self.stats = stats or SinkStatistics()
        self.connected = False
        self.last_error: str | None = None
        self.requests = 0
        #: Failed attempts since the last 2xx: the backoff grows with it and only a 2xx resets it.
        self.failures = 0
        #: Answers longer than ANSWER_MAX_BYTES: the rest of each was not read.
        self.answers_cut = 0
        #: Requests given up on after ``request_deadline_s``.
        self.deadlines = 0

    def client(self) -> httpx.AsyncClient:
        """A client with the sink's TLS settings and the URL's credentials as basic auth.

        :raises OSError, ssl.SSLError: a bad ``ca_file``."""
        verify: ssl.SSLContext | bool = self.settings.verify
        if self.settings.verify and self.settings.ca_file:
            verify = ssl.create_default_context(cafile=self.settings.ca_file)
        credentials = self.settings.basic_auth
        return httpx.AsyncClient(
            verify=verify,
            timeout=httpx.Timeout(self.settings.timeout_s),
            # Answers are only read for logs: uncompressed, so a cut excerpt is still readable.
            headers={"Accept-Encoding": "identity", **self.settings.headers},
            auth=httpx.BasicAuth(*credentials) if credentials else None,
            follow_redirects=False,
        )

    def backoff(self, failures: int) -> float:
        """Exponential backoff with jitter, so a fleet of relays does not retry in lockstep."""
        return backoff_delay(failures, self.settings.retry_min_s, self.settings.retry_max_s)

    async def send(
        self,
        client: httpx.AsyncClient,
        request: Callable[[], httpx.Request],
        *,
        reports: int,
        once: bool = False,
    ) -> Refused | Retry | None:
        """Send ``request()`` (built anew for each attempt) until it is answered 2xx (returns None)
        or refused for good (returns :class:`Refused`). With ``once``, return :data:`RETRY` after the
        first failure's backoff instead of trying again (``live_first`` sinks then re-take newest first).

        The backoff grows with every failure since the last 2xx, across calls: only a delivery resets it.
        (Each call counts its own failures on top of that, so devices sent in parallel do not add up.)"""
        failures = self.failures
        while True:
            self.requests += 1
            may_have_arrived = True
            retry_after: float | None = None
            unreachable = False
            try:
                status, answer, headers = await self._exchange(client, request())
            except trio.TooSlowError:
                self.deadlines += 1
                self.connected = False
                problem = f"no whole answer within request_deadline_s ({self.settings.request_deadline_s} s)"
            except httpx.HTTPError as error:  # transport errors and timeouts
                may_have_arrived = not isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
                # A TLS handshake that failed reached the server: probing would only retry it at once.
                unreachable = not may_have_arrived and not _tls_failure(error)
                self.connected = False
                problem = f"{type(error).__name__}: {error}".rstrip(": ")
            else:
                self.connected = True
                if 200 <= status < 300:
                    self.failures = 0
                    self.last_error = None
                    return None
                if 400 <= status < 500 and status not in RETRYABLE_4XX:
                    self.last_error = f"HTTP {status}: {answer[:200]}"
                    return Refused(status, answer)
                retry_after = parse_retry_after(headers.get("retry-after"), datetime.now(UTC))
                problem = f"HTTP {status}: {answer[:200]}"
            failures += 1
            self.failures = failures
            self.stats.retries += 1
            if may_have_arrived:
                # Sent again after an attempt the server may have received (timeout, 5xx, reset).
                self.stats.duplicates_possible += reports
            self.last_error = problem
            delay = retry_after if retry_after is not None else self.backoff(failures)
            log_event(
                log,
                logging.WARNING,
                "http_retry",
                sink=self.sink,
                url=self.settings.target,
                error=problem,
                attempt=failures,
                retry_in_s=round(delay, 2),
            )
            if unreachable:  # back as soon as the server can be reached; a server that answered waits
                await self.uplink.wait(delay)
            else:
                await trio.sleep(delay)
            if once:
                return RETRY

    async def _exchange(
        self, client: httpx.AsyncClient, request: httpx.Request
    ) -> tuple[int, str, httpx.Headers]:
        """One attempt: the status, the start of the answer as text, the headers.

        The whole of it (connect, upload, answer) within ``request_deadline_s``; at most
        :data:`ANSWER_MAX_BYTES` of the answer are read, and a connection with unread bytes is closed.

        :raises httpx.HTTPError: a transport error or a ``timeout_s`` timeout.
        :raises trio.TooSlowError: the deadline passed.
        """
        with trio.fail_after(self.settings.request_deadline_s):
            response = await client.send(request, stream=True)
            try:
                raw = b""
                async with contextlib.aclosing(response.aiter_raw()) as chunks:
                    async for chunk in chunks:
                        raw += chunk
                        if len(raw) > ANSWER_MAX_BYTES:
                            self.answers_cut += 1
                            raw = raw[:ANSWER_MAX_BYTES]
                            break
            finally:
                # Closing an unfinished answer closes its connection; shielded so that happens even
                # when the deadline struck.
                with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
                    await response.aclose()
        return response.status_code, answer_text(raw, response), response.headers


def answer_text(raw: bytes, response: httpx.Response) -> str:
    """The first :data:`ANSWER_CHARS` characters of an answer's (possibly cut) bytes."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        try:  # wbits 47: a gzip or zlib header, whichever it is; output bounded like the input
            raw = zlib.decompressobj(wbits=47).decompress(raw, ANSWER_MAX_BYTES)
        except zlib.error:
            return f"({encoding}-encoded answer that does not decompress)"
    elif encoding != "identity":
        return f"({encoding}-encoded answer of {len(raw)} bytes or more)"
    charset = response.charset_encoding or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    return raw.decode(charset, errors="replace")[:ANSWER_CHARS]


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MAX_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max((when - now).total_seconds(), 0.0), RETRY_AFTER_MAX_S)


async def retry_requeued(
    sink: str,
    journal: Journal,
    poster: Poster,
    client: httpx.AsyncClient,
    request_for: Callable[[httpx.AsyncClient, dict[str, Any]], Callable[[], httpx.Request]],
) -> int:
    """Send the dead letters ``relay requeue`` marked; settle each. Returns how many were sent."""
    letters = journal.requeued_letters(sink)
    for letter in letters:
        refused = await poster.send(client, request_for(client, letter), reports=letter["reports"])
        assert not isinstance(refused, Retry)
        await trio.to_thread.run_sync(
            lambda letter=letter, refused=refused: journal.settle_letter(
                letter["id"],
                delivered=refused is None,
                status=refused.status if refused else None,
                answer=refused.answer if refused else "",
            )
        )
        log_event(
            log,
            logging.INFO if refused is None else logging.WARNING,
            "dead_letter_requeued",
            sink=sink,
            id=letter["id"],
            outcome="delivered" if refused is None else f"refused again (HTTP {refused.status})",
        )
    return len(letters)


class PostingSink(Sink):
    """A sink that delivers with a :class:`Poster`: its connection state is the poster's."""

    def __init__(
        self, settings: HttpSinkSettings | OsmandSinkSettings, journal: Journal, *, window: int
    ) -> None:
        super().__init__(settings, journal, window=window)
        self.settings: HttpSinkSettings | OsmandSinkSettings = settings
        self.poster = Poster(self.name, settings, self.stats)

    @property
    def connected(self) -> bool:
        return self.poster.connected

    @property
    def last_error(self) -> str | None:
        return self.poster.last_error

    @property
    def answers_cut(self) -> int:
        return self.poster.answers_cut

    @property
    def deadlines(self) -> int:
        return self.poster.deadlines

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver forever: a client with the sink's TLS settings (a bad ``ca_file`` is retried with
        backoff, and said), the position saved as it goes and on the way out."""
        task_status.started()
        failures = 0
        while True:
            try:
                client = self.poster.client()
            except OSError as error:  # ssl.SSLError is an OSError
                self.poster.last_error = f"cannot use ca_file {self.poster.settings.ca_file}: {error}"
                log_event(log, logging.ERROR, "sink_tls_failed", sink=self.name, error=self.poster.last_error)
                failures += 1
                await trio.sleep(self.poster.backoff(failures))
                continue
            try:
                async with client, trio.open_nursery() as nursery:
                    nursery.start_soon(self.delivery.run_flusher)
                    await self._pump(client)
            finally:
                self.delivery.save_now()

    async def _pump(self, client: httpx.AsyncClient) -> None:
        """Send reports with ``client`` until something fails (then :meth:`run` starts again)."""
        raise NotImplementedError


class HttpSink(PostingSink):
    """JSON batches to one URL, one batch in flight, retried until taken or refused for good."""

    def __init__(self, settings: HttpSinkSettings, journal: Journal) -> None:
        super().__init__(settings, journal, window=settings.batch_max_reports)
        self.settings: HttpSinkSettings = settings
        self.batches = 0
        self._carry: deque[tuple[StoredReport, bytes]] = deque()

    # -- batches --------------------------------------------------------------------------------

    async def _pump(self, client: httpx.AsyncClient) -> None:
        next_requeue_check = 0.0
        while True:
            if trio.current_time() >= next_requeue_check:
                await retry_requeued(self.name, self.journal, self.poster, client, self._letter_request)
                next_requeue_check = trio.current_time() + REQUEUE_POLL_S
            batch = await self._collect(until=next_requeue_check)
            if batch:
                await self._deliver(client, batch)

    async def _collect(self, *, until: float) -> list[tuple[StoredReport, bytes]]:
        """Reports for one batch: full by count or bytes, or aged; empty when ``until`` came first."""
        settings = self.settings
        batch: list[tuple[StoredReport, bytes]] = []
        size = 0
        deadline: float | None = None
        while True:
            # Taken reports wait in ``_carry`` (in flight, in order) until they fit in a batch.
            while self._carry:
                report, encoded = self._carry[0]
                full = len(batch) >= settings.batch_max_reports
                if full or (batch and size + len(encoded) + 1 > settings.batch_max_bytes):
                    return batch
                batch.append(self._carry.popleft())
                size += len(encoded) + 1
            if batch and deadline is None:
                deadline = trio.current_time() + settings.batch_max_age_s
            for report in self.delivery.take():
                encoded = report.json_bytes()
                self._carry.append((report, encoded))
            if self._carry:
                continue
            wait_until = deadline if deadline is not None else until
            if trio.current_time() >= wait_until:
                return batch
            with trio.move_on_at(wait_until):
                await self.delivery.wait_for_work()

    def _body(self, documents: Sequence[bytes]) -> bytes:
        site = json.dumps(self.journal.site)
        return b'{"site":' + site.encode() + b',"reports":[' + b",".join(documents) + b"]}"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": JSON_TYPE}
        token = self.settings.token
        if self.settings.token_file:
            # Read every time: a rotated token is used without a restart.
            token = Path(self.settings.token_file).read_text(encoding="utf-8").strip()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self.settings.gzip:
            headers["Content-Encoding"] = "gzip"
        return headers

    def _request(self, client: httpx.AsyncClient, body: bytes) -> Callable[[], httpx.Request]:
        content = gzip.compress(body, compresslevel=6) if self.settings.gzip else body

        def build() -> httpx.Request:
            try:
                headers = self._headers()
            except (OSError, UnicodeDecodeError) as error:
                # Seen as a transport failure: retried with backoff until the file is readable.
                message = f"cannot read token_file {self.settings.token_file}: {error}"
                raise httpx.TransportError(message) from error
            return client.build_request("POST", self.settings.endpoint, content=content, headers=headers)

        return build

    async def _deliver(self, client: httpx.AsyncClient, batch: list[tuple[StoredReport, bytes]]) -> None:
        body = self._body([encoded for _, encoded in batch])
        seqs = [report.seq for report, _ in batch]
        self.stats.published += len(batch)
        self.batches += 1
        live_first = self.settings.drain == "live_first"
        refused = await self.poster.send(
            client, self._request(client, body), reports=len(batch), once=live_first
        )
        if refused is RETRY:
            # live_first: after an outage, each device's newest report goes first again.
            self._carry.clear()
            self.delivery.rewind()
            return
        if isinstance(refused, Refused):
            letter = await trio.to_thread.run_sync(
                lambda: self.journal.park(
                    self.name,
                    seqs,
                    status=refused.status,
                    answer=refused.answer,
                    body=body,
                    content_type=JSON_TYPE,
                )
            )
            self.stats.dead_lettered += len(batch)
            log_event(
                log,
                logging.ERROR,
                "http_batch_refused",
                sink=self.name,
                status=refused.status,
                answer=refused.answer[:200],
                reports=len(batch),
                dead_letter=letter,
                hint="see `relay dead-letters`; fix the cause, then `relay requeue`",
            )
        self.delivery.acknowledge(seqs)

    def _letter_request(
        self, client: httpx.AsyncClient, letter: dict[str, Any]
    ) -> Callable[[], httpx.Request]:
        return self._request(client, letter["body"])


def _tls_failure(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is a TLS failure, not a server out of reach."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "SSL" in str(error) or "certificate" in str(error).lower()
