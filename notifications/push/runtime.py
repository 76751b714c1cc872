"""The push worker of this process: started and stopped with the ASGI
lifespan (service/asgi.py) or by ``manage.py push_worker``, woken by commits
that owe pushes (a wake-up only saves latency: workers also poll)."""

from __future__ import annotations

from django.conf import settings

from notifications.push.worker import PushWorker

_worker: PushWorker | None = None


async def start() -> PushWorker | None:
    """Start this process's worker, unless Web Push is off."""
    global _worker
    cfg = settings.NOTIFY_PUSH
    if cfg is None or _worker is not None:
        return _worker
    _worker = PushWorker(cfg)
    _worker.start()
    return _worker


async def stop(grace: float) -> None:
    global _worker
    worker, _worker = _worker, None
    if worker is not None:
        await worker.stop(grace)


def wake() -> None:
    """After a commit that owes pushes (called from the writer thread)."""
    if _worker is not None:
        _worker.wake()
