"""Stored hints -> DemandHints: the filter's raw strings, parsed with the one request
grammar (dtserver/nodespec.py)."""
from __future__ import annotations

import functools
import logging
from typing import Callable

from dtserver import nodespec
from dtserver.model import DemandHint, Request
from dtserver.store import Store, StoredHint

log = logging.getLogger(__name__)


def hint_from_stored(stored: StoredHint,
                     parse: Callable[[tuple[str, ...], str | None], Request] | None = None
                     ) -> DemandHint:
    """The filter's raw strings -> a DemandHint; nodespec.RequestError when they are bad.
    `parse` turns the raw resources and array into a Request (default: parse_request)."""
    payload = stored.payload
    request = (parse or parse_request)(tuple(payload.get("resources") or ()),
                                       payload.get("array"))
    return DemandHint(id=stored.id, received=stored.received, user=payload["user"],
                      queue=payload.get("queue"), account=payload.get("account"),
                      request=request, count=request.array.size if request.array else 1,
                      source=stored.source)


def parse_request(resources: tuple[str, ...], array: str | None) -> Request:
    return nodespec.parse_resource_list(nodespec.parse_qsub_resources(list(resources)),
                                        array=array)


class HintReader:
    """The stored hints as DemandHints. A hint never changes once stored, so each is read
    and parsed once, and hints that ask alike share one parse: a pass costs a read of the
    ids and of new hints, in proportion to the distinct requests among them.

    Reading never writes, so observing leaves the store as it was: a hint that does not
    parse is left out and kept in `rejected` until the pass calls delete_rejected."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._parsed: dict[int, DemandHint] = {}
        self._last_id = 0
        self.rejected: list[int] = []

    def read(self) -> tuple[DemandHint, ...]:
        parse = functools.lru_cache(maxsize=1024)(parse_request)
        for stored in self._store.hints(after_id=self._last_id):
            self._last_id = max(self._last_id, stored.id)
            try:
                self._parsed[stored.id] = hint_from_stored(stored, parse)
            except (nodespec.RequestError, KeyError) as error:
                log.warning("hint dropped id=%s error=%s", stored.id, error)
                self.rejected.append(stored.id)
        present = self._store.hint_ids()
        for gone in self._parsed.keys() - present:
            del self._parsed[gone]
        return tuple(self._parsed.values())

    def delete_rejected(self) -> None:
        """Delete the hints that did not parse; kept for the next pass if the store fails."""
        if self.rejected:
            self._store.delete_hints(list(self.rejected))
            self.rejected.clear()
