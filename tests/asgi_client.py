"""Requests to the routes Channels answers (the JSON API), through ``optionsite.asgi``.

Django's test client only reaches Django's URLconf; these requests go through the ASGI
application in-process, as daphne hands them over, with the test's database connection (the
answer's thread-sensitive hop runs on the calling thread).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator
from django.test import Client


@dataclass
class Response:
    status_code: int
    content: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.content)


class AsgiClient:
    """``get``/``request`` like Django's test client; ``cookie`` is a Cookie header value."""

    def __init__(self, cookie: str | None = None, host: str = "localhost") -> None:
        self.cookie, self.host = cookie, host

    @classmethod
    def logged_in(cls, user: Any, **kwargs: Any) -> AsgiClient:
        """A client carrying ``user``'s session (created the way a login creates it)."""
        client = Client()
        client.force_login(user)
        return cls(cookie=f"sessionid={client.cookies['sessionid'].value}", **kwargs)

    def get(self, path: str, params: dict[str, str] | None = None) -> Response:
        return self.request("GET", path, params)

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        from optionsite.asgi import application

        if params:
            path = f"{path}?{urlencode(params)}"
        sent = {"host": self.host, **({"cookie": self.cookie} if self.cookie else {})}
        sent.update(headers or {})
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in sent.items()]
        communicator = HttpCommunicator(application, method, path, headers=raw)
        answer = async_to_sync(communicator.get_response)(timeout=10)
        async_to_sync(communicator.wait)(timeout=5)
        got = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in answer["headers"]}
        return Response(answer["status"], answer["body"], got)
