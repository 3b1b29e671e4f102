"""The webhook intake on the event loop: `signals_in.intake.webhook_steps` run with asynchronous
PostgreSQL and Redis connections of the web process's own, so the ASGI fast path answers a webhook
without leaving the event loop (no worker thread, no GIL hand-overs; docs/decisions/0019).

Each web process keeps up to CONNECTIONS_PER_LOOP autocommit connections per event loop (one loop
under daphne), opened as needed and kept; a request holds one for its few statements and waits for
one when all are busy (opening more under a burst cost PostgreSQL a backend each, and the machine
its CPU, just when it had none to spare). The statements are the intake's own, bound client-side
like Django's cursor binds them, so the lock + insert + notify pair still goes as one query.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import redis.asyncio as aioredis
from django.conf import settings
from psycopg import AsyncClientCursor, AsyncConnection

from config.postgres import psycopg_params
from signals_in import intake

CONNECTIONS_PER_LOOP = 4


def application_name() -> str:
    """How this process's intake connections show in pg_stat_activity."""
    return f"propdesk webhook intake {os.getpid()}"


logger = logging.getLogger(__name__)


async def receive_tradingview_webhook(request: intake.WebhookRequest) -> intake.WebhookAnswer:
    resources = _resources()
    try:
        return await _receive(request, resources)
    except psycopg.OperationalError:
        # A kept connection may have died with its server (a PostgreSQL restart): the kept ones
        # go, and the webhook runs once more on a new one. That is safe even if the first try
        # stored the signal before its connection broke: the repeat is found as its duplicate.
        logger.warning("Webhook intake connection failed; once more on a new connection", exc_info=True)
        await resources.close_idle()
        return await _receive(request, resources)


async def _receive(request: intake.WebhookRequest, resources: _LoopResources) -> intake.WebhookAnswer:
    async with resources.connection() as conn:
        steps = intake.webhook_steps(request)
        result: Any = None
        while True:
            try:
                step = steps.send(result)
            except StopIteration as done:
                return done.value
            try:
                result = await _perform(step, conn, resources)
            except Exception:
                if not step.best_effort:
                    raise
                result = intake.skipped(step)


async def _perform(step: intake.Step, conn: AsyncConnection[Any], resources: _LoopResources) -> Any:
    if isinstance(step, intake.CountRequest):
        return int(await resources.redis.eval(intake.RATE_COUNT_LUA, 1, step.counter))
    if isinstance(step, intake.FetchEach):
        sql, params = step.as_one()
    elif isinstance(step, intake.Fetch):
        sql, params = step.sql, step.params
    else:
        sql, params = intake.insert_statement(step.fields)
    async with conn.cursor() as cursor:
        await cursor.execute(sql, params)
        results = [await cursor.fetchall() if cursor.description else []]
        while cursor.nextset():
            results.append(await cursor.fetchall() if cursor.description else [])
    return results if isinstance(step, intake.FetchEach) else results[-1]


class _LoopResources:
    """One event loop's PostgreSQL connections and Redis client."""

    def __init__(self) -> None:
        self.idle: list[AsyncConnection[Any]] = []
        self.free = asyncio.Semaphore(CONNECTIONS_PER_LOOP)
        self.redis = aioredis.Redis.from_url(settings.REDIS_URL, decode_responses=True, socket_timeout=5)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        async with self.free:
            conn = self.idle.pop() if self.idle else await self._connect()
            try:
                yield conn
            except BaseException:
                # It may be mid-statement or broken: never hand it to the next request.
                await conn.close()
                raise
            if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                self.idle.append(conn)
            else:
                await conn.close()

    @staticmethod
    async def _connect() -> AsyncConnection[Any]:
        return await AsyncConnection.connect(
            **psycopg_params(),
            autocommit=True,
            cursor_factory=AsyncClientCursor,
            application_name=application_name(),
        )

    async def close_idle(self) -> None:
        while self.idle:
            await self.idle.pop().close()

    async def close(self) -> None:
        await self.close_idle()
        await self.redis.aclose()


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopResources] = weakref.WeakKeyDictionary()


def _resources() -> _LoopResources:
    loop = asyncio.get_running_loop()
    resources = _BY_LOOP.get(loop)
    if resources is None:
        resources = _BY_LOOP[loop] = _LoopResources()
    return resources


async def close_connections() -> None:
    """Close this event loop's intake connections (tests, and a loop that is about to end)."""
    resources = _BY_LOOP.pop(asyncio.get_running_loop(), None)
    if resources is not None:
        await resources.close()
