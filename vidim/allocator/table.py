"""The live conferences, found by id, by requester and by Call-ID."""

from __future__ import annotations

from collections.abc import Iterator

from .conference import Conference

__all__ = ["ConferenceTable"]


class ConferenceTable:
    """Live conferences by id, with the two indexes requests need.

    A command without ``#id`` means the requester's newest live conference;
    an in-dialog request (the focus's BYE, a NOTIFY) finds its conference
    by Call-ID.

    It also notes which conferences changed, for a state store, once
    :meth:`record_changes` is called.
    """

    def __init__(self) -> None:
        self.by_id: dict[str, Conference] = {}
        self._by_requester: dict[str, list[str]] = {}
        self._by_call_id: dict[str, str] = {}
        self._call_ids: dict[str, list[str]] = {}
        #: Ids of the conferences changed since the last take (in order); None: not noted.
        self._changed: dict[str, None] | None = None

    def __len__(self) -> int:
        return len(self.by_id)

    def __contains__(self, conference_id: object) -> bool:
        return conference_id in self.by_id

    def __iter__(self) -> Iterator[Conference]:
        return iter(self.by_id.values())

    def get(self, conference_id: str | None) -> Conference | None:
        return None if conference_id is None else self.by_id.get(conference_id)

    def record_changes(self) -> None:
        if self._changed is None:
            self._changed = {}

    def touch(self, conference_id: str | None) -> None:
        """Note that a conference changed (a no-op until :meth:`record_changes`)."""
        if self._changed is not None and conference_id is not None:
            self._changed[conference_id] = None

    def take_changed(self) -> list[str]:
        """The ids noted since the last call, live or gone."""
        if not self._changed:
            return []
        changed, self._changed = list(self._changed), {}
        return changed

    def add(self, conference: Conference) -> None:
        """Keep a new or restored conference (restoring one twice keeps it once)."""
        self.touch(conference.id)
        self.by_id[conference.id] = conference
        held = self._by_requester.setdefault(conference.requester, [])
        if conference.id not in held:
            held.append(conference.id)

    def remove(self, conference: Conference, *, keep_record: bool = False) -> list[str]:
        """Forget a conference; returns the Call-IDs it had.

        ``keep_record``: not a change for the store (another process drives it now).
        """
        if keep_record:
            if self._changed is not None:
                self._changed.pop(conference.id, None)
        else:
            self.touch(conference.id)
        self.by_id.pop(conference.id, None)
        held = self._by_requester.get(conference.requester, [])
        if conference.id in held:
            held.remove(conference.id)
        if not held:
            self._by_requester.pop(conference.requester, None)
        call_ids = self._call_ids.pop(conference.id, [])
        for call_id in call_ids:
            self._by_call_id.pop(call_id, None)
        return call_ids

    def newest_of(self, requester: str) -> Conference | None:
        """The requester's newest live conference (the later asked for on a tie)."""
        held = [self.by_id[i] for i in self._by_requester.get(requester, [])]
        return max(reversed(held), key=lambda c: c.created_at, default=None)

    def add_call_id(self, conference: Conference, call_id: str) -> None:
        """Requests with this Call-ID (its dialogs with the focus) concern ``conference``."""
        self._by_call_id[call_id] = conference.id
        self._call_ids.setdefault(conference.id, []).append(call_id)

    def by_call_id(self, call_id: str) -> Conference | None:
        return self.get(self._by_call_id.get(call_id))

    def indexes_empty(self) -> bool:
        """True when nothing is left in any index (for tests of a long-running daemon)."""
        return not (self.by_id or self._by_requester or self._by_call_id or self._call_ids)
