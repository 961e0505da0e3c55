"""Outbound URLs the hub will call: http(s) only, and no private, loopback or link-local host
unless the caller allows them (sandbox institutions, local development)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from adapters.http import is_public_address
from hub import errors


def check_url(url: str, *, allow_private: bool, resolve: bool, param: str = "url") -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise errors.InvalidRequest(
            "The URL must be http(s) with a host.", code="url_invalid", param=param
        )
    if parts.username or parts.password:
        raise errors.InvalidRequest(
            "The URL may not carry credentials.", code="url_invalid", param=param
        )
    if allow_private:
        return url
    host = parts.hostname
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
            addresses = ["127.0.0.1"]
        elif resolve:
            try:
                infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
            except OSError:
                raise errors.InvalidRequest(
                    f"The host {host} does not resolve.", code="url_unresolvable", param=param
                ) from None
            addresses = [str(info[4][0]) for info in infos]
        else:
            addresses = []
    if any(not is_public_address(a) for a in addresses):
        raise errors.InvalidRequest(
            "The URL points at a private, loopback or link-local address.",
            code="url_not_public",
            param=param,
        )
    return url
