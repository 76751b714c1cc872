"""A publish group's rate limits: which of its publications are admitted,
and each request's outcome in the group's order. Shared by the writer
thread (publishing.notifications_publish_rated) and the event loop's plain
groups (notifications/publish_loop.py), which ask the limiter each their
own way (a blocking or an async Redis call)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from notifications.errors import IdempotencyConflict, RateLimited

if TYPE_CHECKING:
    from notifications.publishing import Publication, PublishOutcome, PublishResult


class Admission:
    """A group's rate limits: one call per publisher with its publishes'
    recipient counts, in order (``calls``); the publications admitted
    (``group``); each request's outcome in the group's order."""

    def __init__(self, publications: Sequence[Publication]) -> None:
        self._publications = publications
        self._by_source: dict[str, list[int]] = {}
        for index, publication in enumerate(publications):
            self._by_source.setdefault(publication.source, []).append(index)
        self._outcomes: list[PublishOutcome | None] = [None] * len(publications)
        self._admitted: list[int] = []

    def calls(self) -> list[tuple[str, list[int]]]:
        return [
            (source, [len(set(self._publications[i].recipients)) for i in indexes])
            for source, indexes in self._by_source.items()
        ]

    def answer(self, source: str, flags: Sequence[bool], retry: float) -> None:
        for index, ok in zip(self._by_source[source], flags, strict=True):
            if ok:
                self._admitted.append(index)
            else:
                self._outcomes[index] = RateLimited(retry_after=retry)

    def group(self) -> list[Publication]:
        self._admitted.sort()
        return [self._publications[i] for i in self._admitted]

    def stored(self, outcomes: Sequence[PublishResult | IdempotencyConflict]) -> None:
        for index, outcome in zip(self._admitted, outcomes, strict=True):
            self._outcomes[index] = outcome

    def outcomes(self) -> list[PublishOutcome]:
        return [outcome for outcome in self._outcomes if outcome is not None]
