"""A small Python client for an infernet control plane (used by the CLI)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx


class InfernetError(Exception):
    def __init__(self, message: str, status: int = 0, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


def _raise_for(r: httpx.Response) -> None:
    if r.status_code < 400:
        return
    try:
        err = r.json().get("error", {})
        message, code = err.get("message") or r.text, err.get("code")
    except (ValueError, AttributeError):
        message, code = r.text or f"HTTP {r.status_code}", None
    raise InfernetError(message, r.status_code, code)


class Client:
    def __init__(self, url: str, api_key: str | None, timeout: float = 300.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout, connect=5.0))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.ConnectError:
            raise InfernetError(f"cannot reach the control plane at {self.url}; is `infernet up` running?") from None
        except httpx.HTTPError as exc:
            raise InfernetError(f"request to {self.url} failed: {exc}") from None
        _raise_for(r)
        return r.json()

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/healthz")

    def models(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/models")["data"]

    def nodes(self) -> list[dict[str, Any]]:
        return self._request("GET", "/api/v1/nodes")["data"]

    def chat(self, **body: Any) -> dict[str, Any]:
        return self._request("POST", "/v1/chat/completions", json={**body, "stream": False})

    def chat_stream(self, **body: Any) -> Iterator[dict[str, Any]]:
        """The chunks of a streamed chat completion; the last one carries usage."""
        payload = {**body, "stream": True, "stream_options": {"include_usage": True}}
        try:
            with self._http.stream("POST", "/v1/chat/completions", json=payload) as r:
                if r.status_code >= 400:
                    r.read()
                    _raise_for(r)
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    event = json.loads(data)
                    if "error" in event:
                        err = event["error"]
                        raise InfernetError(err.get("message", "the job failed"), 0, err.get("code"))
                    yield event
        except httpx.ConnectError:
            raise InfernetError(f"cannot reach the control plane at {self.url}; is `infernet up` running?") from None
        except httpx.HTTPError as exc:
            raise InfernetError(f"the stream from {self.url} broke: {exc}") from None

    def create_key(self, name: str = "", role: str = "client", rate_limit: int | None = None, spend_limit: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "role": role}
        if rate_limit is not None:
            body["rate_limit"] = rate_limit
        if spend_limit is not None:
            body["spend_limit"] = spend_limit
        return self._request("POST", "/api/v1/keys", json=body)

    def set_limits(self, key_id: str, **limits: Any) -> dict[str, Any]:
        """rate_limit (per minute) and/or spend_limit (USDC per 24 h); None clears one."""
        return self._request("PATCH", f"/api/v1/keys/{key_id}", json=limits)

    def credit(self, key_id: str, amount: str) -> dict[str, Any]:
        return self._request("POST", f"/api/v1/keys/{key_id}/credit", json={"amount": amount})

    def balance(self, key_id: str | None = None) -> dict[str, Any]:
        return self._request("GET", "/api/v1/balance", params={"key_id": key_id} if key_id else None)

    def pricing(self) -> dict[str, Any]:
        return self._request("GET", "/api/v1/pricing")

    def set_pricing(self, table: dict[str, Any]) -> dict[str, Any]:
        return self._request("PUT", "/api/v1/pricing", json=table)

    def platform(self) -> dict[str, Any]:
        return self._request("GET", "/api/v1/platform")

    def receipt(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v1/jobs/{job_id}/receipt")

    # -- requests signed by a node's key --------------------------------------------------

    def _signed(self, identity: Any, method: str, path: str, body: bytes = b"") -> Any:
        from infernet.protocol import auth

        header = auth.sign_request(identity, method, path, body)
        return self._request(method, path, content=body, headers={auth.AUTH_HEADER: header, "content-type": "application/json"})

    def payments(self, identity: Any, receipts: int = 20) -> dict[str, Any]:
        return self._signed(identity, "GET", f"/api/v1/node/payments?receipts={receipts}")

    def payout(self, identity: Any, limit: int = 1000) -> dict[str, Any]:
        return self._signed(identity, "POST", "/api/v1/node/payouts", json.dumps({"limit": limit}).encode())

    def list_keys(self) -> list[dict[str, Any]]:
        return self._request("GET", "/api/v1/keys")["data"]

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        return self._request("DELETE", f"/api/v1/keys/{key_id}")

    def jobs(self) -> list[dict[str, Any]]:
        return self._request("GET", "/api/v1/jobs")["data"]

    def job(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v1/jobs/{job_id}")
