"""The agent's calls to the licensing authority over HTTP(S): the shell around the pure rules. Every call ends in an
`Outcome`: the answer, or the reason there is none, in words an admin reads in the alert."""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp

from ccxlic_agent.machine import Call, Outcome

PATHS = {
    "register": "/v1/product/register",
    "authorize": "/v1/product/authorize",
    "renew_registration": "/v1/product/renew-registration",
    "report": "/v1/product/report",
    "deregister": "/v1/product/deregister",
}


class AuthorityClient:
    """Calls the authority at `url` (direct), through `proxy`, or at the instance's SSM On-Prem URL (HTTPS only:
    its certificate must name the URL's host, checked against the system's CAs and `ca_file`)."""

    def __init__(self, url: str, timeout: float, ca_file: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.tls = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    def _base(self, call: Call) -> str:
        if call.transport == "onprem":
            assert call.url is not None
            return call.url.rstrip("/")
        return self.url

    async def perform(self, call: Call) -> Outcome:
        base = self._base(call)
        if call.transport == "onprem" and not base.startswith("https://"):
            return Outcome(call, False, reason=f"the SSM On-Prem URL must be https:// (got {base})")
        try:
            if call.operation in ("probe", "pin_key"):
                # the transport check, and the key a reservation's authorization code is verified with later
                return Outcome(call, True, await self._request(call, "GET", base + "/v1/keys", None))
            answer = await self._request(call, "POST", base + PATHS[call.operation], call.body)
            return Outcome(call, True, answer)
        except _Refused as exc:
            return Outcome(call, False, reason=str(exc))
        except TimeoutError:
            return Outcome(
                call, False, reason=f"timeout: the licensing authority did not answer within {self.timeout:g} s"
            )
        except aiohttp.ClientConnectorCertificateError as exc:
            return Outcome(
                call, False, reason=f"the authority's certificate is not valid for {base}: {exc.certificate_error}"
            )
        except aiohttp.ClientError as exc:
            return Outcome(call, False, reason=f"unreachable: {type(exc).__name__}: {exc}"[:1000])

    async def _request(self, call: Call, method: str, url: str, body: dict[str, Any] | None) -> dict[str, Any]:
        proxy = call.proxy if call.transport == "proxy" else None
        tls: ssl.SSLContext | bool = self.tls if url.startswith("https://") else True
        async with self._http().request(method, url, json=body, proxy=proxy, ssl=tls) as r:
            try:
                answer = await r.json(content_type=None)
            except ValueError:
                answer = None
            if r.status >= 400 or not isinstance(answer, dict):
                error = answer.get("error") if isinstance(answer, dict) else None
                raise _Refused(f"refused ({r.status}): {error or 'no reason given'}"[:1000])
            return answer


class _Refused(Exception):
    pass
