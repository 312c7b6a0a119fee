"""A TCP proxy in front of the local kube-apiserver that can drop connections on purpose: a connection
failure made for real (the client sees its connection reset), with the real apiserver behind it.

    async with proxy.Proxy(target_port=plane.apiserver_port) as front:
        front.reset_next = 2            # the next two connections are reset at once
        kubeconfig = front.kubeconfig(plane.kubeconfig, tmp_path)   # the same credentials, via the proxy
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import pathlib

import yaml


@dataclasses.dataclass
class Proxy:
    target_port: int
    host: str = "127.0.0.1"
    reset_next: int = 0  # connections to reset before forwarding again
    accepted: int = 0
    reset: int = 0
    port: int = 0
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    def kubeconfig(self, original: pathlib.Path, directory: pathlib.Path) -> str:
        """A copy of ``original`` whose server is this proxy (the apiserver's certificate names 127.0.0.1)."""
        config = yaml.safe_load(original.read_text())
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = f"https://{self.host}:{self.port}"
        path = directory / f"kubeconfig-proxy-{self.port}"
        path.write_text(yaml.safe_dump(config))
        return str(path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.reset_next > 0:
            self.reset_next -= 1
            self.reset += 1
            transport = writer.transport
            assert isinstance(transport, asyncio.Transport)
            transport.abort()  # RST: the client's connection is reset
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.close()
