"""The live sessions of a server: one fixed-size `LiveSession` per listener, and a bounded number of them."""

from __future__ import annotations

import threading
from collections import OrderedDict

from modeling.streaming import LiveSession


class LiveSessions:
    """The sessions of a server, by the browser session's id: at most `max_sessions` (the least recently used
    goes first), each of fixed size, so memory is bounded whatever the number of listeners."""

    def __init__(self, max_sessions: int = 64, **session_kwargs):
        self.max_sessions = max_sessions
        self.session_kwargs = session_kwargs
        self._sessions: OrderedDict[str, LiveSession] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> LiveSession:
        with self._lock:
            session = self._sessions.pop(key, None) or LiveSession(**self.session_kwargs)
            self._sessions[key] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
            return session

    def reset(self, key: str) -> None:
        with self._lock:
            self._sessions.pop(key, None)

    def __len__(self) -> int:
        return len(self._sessions)
