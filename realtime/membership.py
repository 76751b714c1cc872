"""A connection's membership: its channel, the user's group, presence and the counts.

``StreamSession`` (realtime/engine.py) builds on it; ``_count`` and
``_leave`` keep ``state.sockets`` (the drain), ``notify_sockets_open`` and
presence in step for every transport.
"""

from __future__ import annotations

import logging
from typing import Any

from notifications import delivery, metrics, presence
from notifications.runtime import state
from realtime.outbox import Outbox, Transport

logger = logging.getLogger(__name__)


class Membership(Outbox):
    __slots__ = ("_counted", "_joined", "channel_name", "user_id")

    def __init__(self, transport: Transport, user_id: str) -> None:
        super().__init__(transport)
        self.user_id = user_id
        self.channel_name = ""
        self._joined = self._counted = False

    def on_layer_message(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    async def open(self) -> bool:
        """Open this connection's channel and join the user's group; False
        when the channel layer is unavailable (the transport refuses with
        "try again later")."""
        try:
            self.channel_name = delivery.open_channel(self.on_layer_message) or ""
            if not self.channel_name:
                raise RuntimeError("the channel layer has no direct channels")
            await delivery.join(self.user_id, self.channel_name)
        except Exception as exc:
            logger.warning("channel layer unavailable; refusing (%s)", type(exc).__name__)
            self.release()
            return False
        self._joined = True
        return True

    async def _count(self) -> None:
        """Count the connection (started): the drain, the gauge, presence."""
        self._counted = True
        state.sockets.add(self)
        metrics.SOCKETS_OPEN.inc()
        await presence.backend().connected(self.user_id, self.channel_name)

    def release(self) -> None:
        self._release_membership()

    def _release_membership(self) -> None:
        if self.channel_name:
            delivery.close_channel(self.channel_name)
        if self._joined or self._counted:  # left without a disconnect (an error)
            state.spawn(self._leave())

    async def _leave(self) -> None:
        if self._counted:
            self._counted = False
            state.sockets.discard(self)
            metrics.SOCKETS_OPEN.dec()
            await presence.backend().disconnected(self.user_id, self.channel_name)
        if self._joined:
            self._joined = False
            try:
                await delivery.leave(self.user_id, self.channel_name)
            except Exception:
                logger.warning("group_discard failed", exc_info=True)
