"""A server-sent events decoder (the WHATWG HTML "event stream" rules), sans I/O.

Feed it lines (httpx's ``iter_lines`` splits on CRLF, LF and CR, as the format wants); a
blank line dispatches the event built so far. Comments (``:keep-alive``) are skipped, and
the last ``id`` seen is kept for a reconnect's ``Last-Event-ID``, and the last valid
``retry`` as ``reconnection_time``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# ASCII digits only: ``str.isdigit`` also takes "²" and other digits ``int`` refuses.
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str  # "message" unless the stream named it
    data: str
    id: str | None  # the last event id as of this event
    retry: int | None = None  # a reconnection time the stream asked for, milliseconds


class SSEDecoder:
    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._retry: int | None = None
        self.last_event_id: str | None = None
        # The format sets the reconnection time as soon as the field is read, whether or
        # not an event follows (a stream may send ``retry`` on its own).
        self.reconnection_time: int | None = None  # milliseconds

    def feed(self, line: str) -> ServerSentEvent | None:
        """One line, without its line break; an event when the line ends one."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and _DIGITS.fullmatch(value):
            self._retry = self.reconnection_time = int(value)
        return None  # other fields are ignored, as the format says

    def _dispatch(self) -> ServerSentEvent | None:
        data, event, retry = self._data, self._event, self._retry
        self._data, self._event, self._retry = [], "", None
        if not data:
            return None
        return ServerSentEvent(event or "message", "\n".join(data), self.last_event_id, retry)
