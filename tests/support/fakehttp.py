"""An in-memory stand-in for rebuildgate.http.HttpClient (the fetcher interface), for unit tests
of what the fetcher does around the network: no sockets, exact request counts, chosen delays."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from rebuildgate.errors import EvidenceMissing, FetchError
from rebuildgate.http import RequestTimeout


@dataclass
class FakeHttp:
    """``bodies[url]``: the body served with 200, or an int status (404/410: missing, else an
    error); a URL not listed is 404.  ``delays[host]``: seconds before a host answers."""

    bodies: dict[str, bytes | int] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    closed: bool = False

    async def get(self, url: str, deadline: float) -> bytes:
        self.requests.append(url)
        host = url.split("/")[2]
        delay = self.delays.get(host, 0.0)
        if delay:
            left = deadline - time.monotonic()
            await asyncio.sleep(max(min(delay, left), 0.0))
            if delay > left:
                raise RequestTimeout(f"{host} did not answer within the deadline")
        answer = self.bodies.get(url, 404)
        if isinstance(answer, int):
            if answer in (404, 410):
                raise EvidenceMissing(f"no evidence at {url} (HTTP {answer})")
            raise FetchError(f"{url} answered HTTP {answer}")
        return answer

    def close(self) -> None:
        self.closed = True
