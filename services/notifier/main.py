"""The notifier service: bug reports, error groups, monitor failures → the providers a project set.

Loop: poll (consumer group ``notifier``) → for each notification and each matching target,
one delivery with id (project, subject, target) → run them concurrently, each retried with
backoff + jitter behind its target's token bucket, until delivered or dead-lettered → commit.
Nothing is committed while a delivery of the batch is still being tried, so a crash replays
the batch, and the delivery log (see ``delivery``) makes the replay skip what was done.

Secrets are decrypted only to build a request; logs carry the target id, provider and
status, never a URL (a Discord webhook URL is its credential) nor a header.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Unpack

import httpx
import orjson

from forgeline.bus.port import Bus, OutgoingRecord, Record
from forgeline.bus.topics import dead_letter_topic
from forgeline.notify.crypto import SecretBox, SecretError
from forgeline.notify.egress import BlockedDestination, OutboundClients, parse_networks
from forgeline.notify.model import Target
from forgeline.notify.store import TargetFollower
from forgeline.processing.deadletter import InvalidMessage, as_invalid, dead_letter
from forgeline.processing.host import DEFAULT_POLL_TIMEOUT_S, HostOptions, ProcessorHost, Runtime, Strategy
from forgeline.processing.loop import next_offsets
from forgeline.processing.registry import Parts
from forgeline.processing.sinks import send_with_retry
from forgeline.telemetry.metrics import (
    NOTIFIER_DEAD_LETTERS,
    NOTIFIER_DUPLICATES,
    NOTIFIER_FAILED_ATTEMPTS,
    NOTIFIER_RECOVERED,
    NOTIFIER_RETRIES,
    NOTIFIER_SEND_LATENCY,
    NOTIFIER_SENT,
)
from services.notifier import providers
from services.notifier.delivery import DeliveryLog, Pending, TokenBucket, backoff_s
from services.notifier.subjects import TOPICS, Notification, delivery_id, parse

GROUP = "notifier"
ABANDONED = None  # a delivery the service stopped before it was sent or settled
log = logging.getLogger(__name__)
# httpx logs every request URL at INFO; a Discord webhook URL is a credential.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class NotifyPolicy:
    max_attempts: int = 6
    backoff_s: float = 0.5
    backoff_max_s: float = 60.0
    timeout_s: float = 10.0
    concurrency: int = 64
    # Non-public networks every target may reach (FORGELINE_NOTIFY_ALLOWED_NETWORKS).
    allowed_networks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str  # "ok" | "already" | "retry" | "permanent"
    reason: str = ""  # bounded label: timeout, connect, lookup, http_<status>, blocked_address
    retry_after_s: float | None = None
    detail: str = ""  # for the dead letter and `notify test`: never a URL path or a secret


def wants(target: Target, n: Notification) -> bool:
    if n.subject not in target.subjects:
        return False
    # A bug report goes only to the providers it asked for.
    return n.requested is None or target.provider in n.requested


async def attempt(
    client: httpx.AsyncClient, target: Target, secret: str, n: Notification, did: str, pending_since_ms: int | None
) -> Outcome:
    """One try: the look-up first when an earlier run may have sent it, then the request."""
    if pending_since_ms is not None:
        try:
            if await providers.already_delivered(client, target, secret, did, pending_since_ms):
                return Outcome("already")
        except BlockedDestination as err:
            return Outcome("permanent", "blocked_address", detail=str(err))
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
            return Outcome("retry", "lookup")
    request = providers.build_request(target, secret, n, did)
    started = time.perf_counter()
    try:
        response = await client.request(request.method, request.url, headers=request.headers, content=request.body)
    except BlockedDestination as err:  # refused before any connection: the address is not allowed
        return Outcome("permanent", "blocked_address", detail=str(err))
    except httpx.TimeoutException:
        return Outcome("retry", "timeout")
    except httpx.TransportError:
        return Outcome("retry", "connect")
    finally:
        NOTIFIER_SEND_LATENCY.labels(provider=target.provider).observe(time.perf_counter() - started)
    if response.is_success:
        return Outcome("ok")
    reason = f"http_{response.status_code}"
    if providers.is_retriable(response):
        return Outcome("retry", reason, providers.retry_after_s(response))
    return Outcome("permanent", reason)


class NotifyStrategy(Strategy):
    def __init__(self, runtime: Runtime, box: SecretBox, policy: NotifyPolicy, batch: int) -> None:
        self._runtime = runtime
        self._targets = TargetFollower(runtime.bus)
        self._log = DeliveryLog(runtime.bus, runtime.producer)
        self._box = box
        self._policy = policy
        self._batch = batch
        self._buckets: dict[str, TokenBucket] = {}
        self._semaphore = asyncio.Semaphore(policy.concurrency)
        self._clients = contextlib.AsyncExitStack()
        self._client: OutboundClients | None = None

    def capacity(self) -> tuple[int, float]:
        return self._batch, DEFAULT_POLL_TIMEOUT_S

    async def start(self) -> None:
        await self._targets.start()
        loaded = await self._log.load()
        log.info(
            "notifier started",
            extra={"targets": len(self._targets.table.targets), "delivery_log_records": loaded},
        )
        timeout = httpx.Timeout(self._policy.timeout_s)
        # httpcore scans its whole pool per request: a small pool is faster than one per task.
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
        networks = parse_networks(self._policy.allowed_networks)
        self._client = await self._clients.enter_async_context(OutboundClients(networks, timeout, limits))

    async def assigned(self) -> None:
        # New partitions (Kafka): the batches another replica settled on them are committed,
        # and its marks of a batch it abandoned at stop are in the log: read them, so those
        # deliveries are looked up before being sent again, not sent twice.
        loaded = await self._log.load()
        log.info("delivery log reloaded after an assignment", extra={"delivery_log_records": loaded})

    async def close(self) -> None:
        try:
            await self._clients.aclose()
        finally:
            await self._targets.stop()

    async def poll(self) -> None:
        await self._targets.catch_up()  # `notify add` applies from the next batch on

    async def submit(self, records: list[Record]) -> None:
        assert self._client is not None, "submit before start"
        await self._targets.catch_up()
        await self._process(self._client, records)

    async def _unless_stopped(self, waiting: Awaitable[None]) -> bool:
        """Await ``waiting`` (a token, a backoff) unless the service stops first: False then."""
        stopping = self._runtime.stopping
        if stopping.is_set():
            if asyncio.iscoroutine(waiting):
                waiting.close()
            return False
        work = asyncio.ensure_future(waiting)
        stop = asyncio.ensure_future(stopping.wait())
        done, _ = await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            stop.cancel()
            work.result()
            return True
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        return False

    async def _process(self, client: OutboundClients, records: list[Record]) -> None:
        jobs: dict[str, tuple[Target, Notification, Record, Pending | None]] = {}
        rejected: list[OutgoingRecord] = []
        for record in records:
            # Whatever reading a record raises dead-letters that record alone; its deliveries
            # join the batch only once all of them were worked out.
            with self._runtime.dead_letters.guarded(record, rejected):
                jobs.update(self._jobs(record, jobs))
        # "pending" for the whole batch in one durable append, before the first request.
        await self._log.mark_many([did for did, job in jobs.items() if job[3] is None], "pending")
        broken = await asyncio.gather(
            *(
                self._deliver(client, target, n, did, record, pending)
                for did, (target, n, record, pending) in jobs.items()
            )
        )
        if ABANDONED in broken:
            # Stopped mid-batch: no attempt was cut off on the wire (each one in flight finished
            # and was recorded), the rest were never sent; whoever reads the batch next sends them.
            log.info("stopped mid-batch; the batch will be redelivered", extra={"records": len(records)})
            return
        # A record counts as failed once for the limit, however many of its deliveries broke.
        failed = {
            (record.tp, record.offset) for (_, _, record, _), bad in zip(jobs.values(), broken, strict=True) if bad
        }
        self._runtime.dead_letters.check(len(records), len(rejected) + len(failed))
        await send_with_retry(self._runtime.producer, rejected, GROUP)
        await self._runtime.commit(next_offsets(records), len(records))

    def _jobs(
        self, record: Record, batch: dict[str, tuple[Target, Notification, Record, Pending | None]]
    ) -> dict[str, tuple[Target, Notification, Record, Pending | None]]:
        """The deliveries one record asks for (none if it is no notification or all were done)."""
        jobs: dict[str, tuple[Target, Notification, Record, Pending | None]] = {}
        n = parse(record)
        if n is None:
            return jobs
        for target in self._targets.table.for_project(n.project_id):
            if not wants(target, n):
                continue
            did = delivery_id(n.project_id, n.subject_id, target.id)
            if did in self._log.done or did in batch or did in jobs:
                NOTIFIER_DUPLICATES.labels(provider=target.provider).inc()
                continue
            jobs[did] = (target, n, record, self._log.pending.get(did))
        return jobs

    def _bucket(self, target: Target) -> TokenBucket:
        bucket = self._buckets.get(target.id)
        rate = target.rate or target.spec.rate
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[target.id] = TokenBucket(rate, max(target.spec.burst, int(rate)))
        return bucket

    async def _deliver(
        self,
        clients: OutboundClients,
        target: Target,
        n: Notification,
        did: str,
        record: Record,
        pending: Pending | None,
    ) -> bool | None:
        """Deliver one notification to one target; True if our own code raised (not the provider),
        ABANDONED if the service stopped before it was settled (then it was not sent)."""
        async with self._semaphore:
            provider = target.provider
            ctx = {"target": target.id, "provider": provider, "delivery_id": did, "subject": n.subject}
            try:
                secret = self._box.decrypt(target.secret)
            except SecretError as err:
                await self._dead(target, n, did, record, "secret", str(err), 0)
                return False
            # Pending from an earlier run: it may have reached the provider; look before sending.
            pending_since = pending.since_ms if pending is not None else None
            bucket = self._bucket(target)
            client = clients.client(target.allow_private)  # never a pool shared across policies
            tries = 0
            while True:
                tries += 1
                if not await self._unless_stopped(bucket.acquire()):
                    return ABANDONED
                try:
                    outcome = await attempt(client, target, secret, n, did, pending_since)
                except Exception as err:  # noqa: BLE001 - a bug building or reading a request: never retried
                    invalid = as_invalid(err)
                    log.error("delivery failed on an unexpected error", exc_info=err, extra=ctx)
                    await self._dead(target, n, did, record, invalid.reason, invalid.detail, tries)
                    return True
                if outcome.kind in ("ok", "already"):
                    await self._log.mark(did, "delivered")
                    if outcome.kind == "ok":
                        NOTIFIER_SENT.labels(provider=provider).inc()
                    else:
                        NOTIFIER_RECOVERED.labels(provider=provider).inc()
                        log.info("found delivered by an earlier run", extra=ctx)
                    return False
                pending_since = pending_since if outcome.reason == "lookup" else None
                NOTIFIER_FAILED_ATTEMPTS.labels(provider=provider, reason=outcome.reason).inc()
                if outcome.kind == "permanent" or tries >= self._policy.max_attempts:
                    await self._dead(target, n, did, record, outcome.reason, outcome.detail, tries)
                    return False
                delay = backoff_s(tries, self._policy.backoff_s, self._policy.backoff_max_s)
                if outcome.retry_after_s is not None:
                    wait = min(outcome.retry_after_s, self._policy.backoff_max_s)
                    bucket.penalise(wait)
                    delay = max(delay, wait)
                NOTIFIER_RETRIES.labels(provider=provider, reason=outcome.reason).inc()
                log.info(
                    "delivery failed; retrying",
                    extra={**ctx, "reason": outcome.reason, "attempt": tries, "retry_in_s": round(delay, 3)},
                )
                if not await self._unless_stopped(asyncio.sleep(delay)):
                    return ABANDONED

    async def _dead(
        self, target: Target, n: Notification, did: str, record: Record, reason: str, detail: str, tries: int
    ) -> None:
        """Give up: the notification (never the secret) goes to dlq.notifier; the writer stores it."""
        NOTIFIER_DEAD_LETTERS.labels(provider=target.provider, reason=reason).inc()
        log.warning(
            "delivery dead-lettered",
            extra={
                "target": target.id,
                "provider": target.provider,
                "delivery_id": did,
                "reason": reason,
                "attempts": tries,
            },
        )
        payload = {
            "delivery_id": did,
            "target_id": target.id,
            "provider": target.provider,
            "subject": n.subject,
            "subject_id": n.subject_id,
            "project_id": n.project_id,
            "title": n.title,
            "attempts": tries,
            "reason": reason,
        }
        base = dead_letter(
            GROUP, record, InvalidMessage(f"notify_{reason}", detail or f"{target.provider} after {tries} attempts")
        )
        out = OutgoingRecord(
            dead_letter_topic(GROUP),
            orjson.dumps(payload),
            key=did.encode(),
            headers=(*base.headers, ("dead_letter_key", did.encode())),
        )
        await send_with_retry(self._runtime.producer, [out], GROUP)
        await self._log.mark(did, "dead", reason)


class NotifierService(ProcessorHost):
    def __init__(
        self,
        bus: Bus,
        box: SecretBox,
        policy: NotifyPolicy | None = None,
        batch: int = 500,
        **options: Unpack[HostOptions],
    ) -> None:
        super().__init__(
            GROUP,
            bus,
            TOPICS,
            lambda rt: NotifyStrategy(rt, box, policy or NotifyPolicy(), batch),
            **options,
        )

    async def lag(self) -> int:
        """Records of the input topics not yet committed (0: every delivery so far is settled)."""
        ends = await self._consumer.end_offsets()
        total = 0
        for tp, end in ends.items():
            total += max(end - await self._consumer.committed(tp), 0)
        return total


def build(parts: Parts) -> NotifierService:
    from forgeline.notify.crypto import load_key

    s = parts.settings
    policy = NotifyPolicy(
        max_attempts=s.notify_max_attempts,
        backoff_s=s.notify_backoff_seconds,
        backoff_max_s=s.notify_backoff_max_seconds,
        timeout_s=s.notify_timeout_seconds,
        concurrency=s.notify_concurrency,
        allowed_networks=s.notify_allowed_networks,
    )
    box = SecretBox(load_key(s.data_dir.resolve(), s.notify_key.reveal()))
    return NotifierService(parts.bus, box, policy, dead_letters=parts.dead_letters)
