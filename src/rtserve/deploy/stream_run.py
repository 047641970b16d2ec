"""``rtserve stream``'s main loop: a ``StreamScorer`` fed by the broker link the URL names.

Separate from ``stream`` (the broker-neutral scorer, which ``stream_brokers`` builds on) so the
three modules import one way; FastStream is imported only when ``run`` starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from rtserve.deploy.stream import StreamConfig, StreamScorer, StreamStats, redact
from rtserve.engine.predictor import Predictor
from rtserve.errors import StreamError

logger = logging.getLogger("rtserve.stream")


async def run(
    predictor: Predictor,
    config: StreamConfig,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[], None] | None = None,
    stats: StreamStats | None = None,
) -> StreamStats:
    """Consume, score and publish until ``stop`` is set (or SIGTERM/SIGINT), then drain.

    On stop, consumption ends first, the queued messages are scored, published and
    acknowledged, and the connection closes; whatever was still in flight at the broker is
    redelivered to the next consumer. ``stats`` (updated as messages are settled) lets a caller
    watch progress.
    """
    try:
        from rtserve.deploy import stream_brokers
    except ImportError as exc:
        raise StreamError(
            f"stream scoring needs FastStream and the broker clients ({exc}); install them "
            "with: pip install 'rtserve[stream]'"
        ) from exc
    stop = stop or _signal_event()
    link = stream_brokers.connect(config)
    scorer = StreamScorer(predictor, config, link.publish, stats)
    worker = asyncio.create_task(scorer.run())
    try:
        await link.start(scorer.submit)
        logger.info("consuming %r from %s", config.in_subject, redact(config.broker_url))
        if on_ready is not None:
            on_ready()
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({stopping, worker}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if worker.done():  # the scorer failed: say why instead of consuming into a dead queue
            worker.result()
        await link.stop_consuming()
        await scorer.close()
        await worker
    finally:
        if not worker.done():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        await link.close()
    return scorer.stats


def _signal_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (the way containers and terminals ask to stop)."""
    import signal

    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)
    return event
