"""A fault-injecting HTTP/1.1 proxy to put in front of an S3-compatible server
(the kernel here has no netem).

Per request it can wait a set latency before forwarding, and at a given rate
answer instead with 503 SlowDown or 500 InternalError, reset the connection
(TCP RST, nothing sent), forward the reply but cut its body short and then
reset, hold the reply for --stall-s seconds before its first byte ("stall")
or in the middle of its body ("stall_body"), or send it slowly but steadily:
head and body in ten pieces spread over --slow-s seconds ("slow"). Keep-alive
connections are kept on both sides, one upstream connection per client
connection, so the latency is added per request, not per connection. The
client side stays keep-alive even when the server closes every connection
(moto's development server does; S3 does not).

    python s3_fault_proxy.py --upstream 127.0.0.1:5000 --latency-ms 20 \\
        --fault-rate 0.1 --faults 503,500,reset,truncate
    python s3_fault_proxy.py --upstream 127.0.0.1:5000 \\
        --fault-rates 503=0.10,reset=0.05,stall=0.01 --stall-s 10

prints ``PORT <n> CONTROL <m>`` on its first line once it listens and runs
until killed. ``GET /__proxy__/stats`` on the proxy port (answered by the
proxy itself, no latency) returns JSON counts: requests, requests forwarded
and faults injected by kind. The control port answers, whatever state the
proxy is in:

    GET  /stats                 the same counts
    POST /gone?mode=refuse      the server goes away for good: stop listening
                                (new connections are refused) and reset every
                                open connection
    POST /gone?mode=blackhole   the server hangs: connections are accepted and
                                requests read, but nothing is ever answered
    POST /back                  forward again (listening on the same port)
    POST /tls?cert=PEM&key=PEM  (with --tls-cert) serve this certificate from
                                now on, and reset every open connection
    POST /reset                 reset every open connection
    POST /refuse?match=TEXT&status=403&code=AccessDenied[&times=N]
                                requests whose "METHOD /path?query" contains
                                TEXT are answered with that S3 error (their
                                body read, nothing forwarded): the next N of
                                them, or all (counted in "refused")
    POST /allow                 no more refusals

With ``--tls-cert PEM --tls-key PEM`` it speaks https to its clients (to
the server behind it, plain http); the stats then also count the TLS
handshakes that resumed a session ("tls_resumed") and that failed
("tls_failures"; neither with --uvloop, where the
handshake is made before the connection is handed over). Every accepted connection is
counted ("connections"). A request for ``/__redirect__/<path>`` is answered
``302 Found`` with ``Location: /<path>`` (counted in "redirects"). The
"trickle" fault sends the reply one byte every --trickle-s seconds.

With ``--serve-dir DIR --bucket B --prefix P`` it is itself a minimal
S3 stub instead of a proxy: the files under DIR, held in memory, answer
path-style GET and HEAD of /B/P<relative path> and ListObjectsV2 (max-keys
up to 1,000, continuation tokens, encoding-type=url), without checking signatures.
It costs a fraction of moto's CPU per request, so a benchmark can show what
the loader does when the server is not what saturates the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import ssl
import struct
import sys
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.sax.saxutils import escape

FAULT_KINDS = ("503", "500", "reset", "truncate", "stall", "stall_body", "slow", "trickle")
# What --faults means without a list: the kinds that answer at once.
DEFAULT_FAULTS = ("503", "500", "reset", "truncate")
GONE_MODES = ("refuse", "blackhole")


class HttpError(Exception):
    pass


async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    """One request or response head, or None on a clean EOF before it."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise HttpError("connection closed inside a message head") from e
    except asyncio.LimitOverrunError as e:
        raise HttpError("message head too large") from e


def parse_head(head: bytes):
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0]
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return first, headers


async def read_body(reader, headers, method=None, status=None) -> tuple[bytes, bool]:
    """The raw body bytes as framed on the wire, and whether the message was
    delimited by closing the connection."""
    if method == "HEAD" or (status is not None and (status < 200 or status in (204, 304))):
        return b"", False
    if "chunked" in headers.get("transfer-encoding", "").lower():
        out = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            out += size_line
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                # Trailers, then the blank line.
                while True:
                    line = await reader.readuntil(b"\r\n")
                    out += line
                    if line == b"\r\n":
                        return bytes(out), False
            out += await reader.readexactly(size + 2)
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"])), False
    if status is None:  # a request without a length has no body
        return b"", False
    return await reader.read(), True


def error_reply(status: int, code: str, message: str) -> bytes:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        "<RequestId>PROXYFAULT</RequestId></Error>"
    ).encode()
    reason = {503: "Slow Down", 500: "Internal Server Error"}.get(status, "Error")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


def keep_alive_head(head: bytes, body_len: int | None) -> bytes:
    """The response head without "Connection: close" (and with a
    Content-Length when the body was delimited by closing): the client side
    stays keep-alive, as S3 does, even when the server behind (moto's
    development server) closes every connection."""
    lines = head.decode("latin-1").split("\r\n")
    out = [lines[0]]
    for line in lines[1:]:
        if not line:
            continue
        name = line.partition(":")[0].strip().lower()
        if name == "connection" or (body_len is not None and name == "content-length"):
            continue
        out.append(line)
    if body_len is not None:
        out.append(f"Content-Length: {body_len}")
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")


def reset(writer: asyncio.StreamWriter) -> None:
    """Closes with a TCP RST rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class MemoryS3:
    """Objects in memory behind path-style GET, HEAD and ListObjectsV2."""

    def __init__(self, root: str, bucket: str, prefix: str):
        self.bucket = bucket
        self.objects = {}
        base = Path(root)
        for p in sorted(base.rglob("*")):
            rel = p.relative_to(base)
            if p.is_file() and not any(part.startswith(".") for part in rel.parts):
                self.objects[prefix + rel.as_posix()] = p.read_bytes()
        self.keys = sorted(self.objects)
        # Whole GET replies, built once: the stub is there to cost the
        # machine as little CPU per request as it can.
        self.get_replies = {k: self._head(v) + v for k, v in self.objects.items()}

    @staticmethod
    def _head(data: bytes) -> bytes:
        return (f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {len(data)}\r\nETag: \"{len(data):x}\"\r\n\r\n").encode()

    def reply(self, method: str, target: str) -> bytes:
        url = urlsplit(target)
        path = unquote(url.path)
        bucket, _, key = path.lstrip("/").partition("/")
        if bucket != self.bucket:
            return error_reply(404, "NoSuchBucket", "The specified bucket does not exist")
        if not key:
            return self.list(parse_qs(url.query, keep_blank_values=True))
        data = self.objects.get(key)
        if data is None:
            return error_reply(404, "NoSuchKey", "The specified key does not exist.")
        return self._head(data) if method == "HEAD" else self.get_replies[key]

    def list(self, q) -> bytes:
        prefix = q.get("prefix", [""])[0]
        after = q.get("continuation-token", [""])[0]
        url_enc = q.get("encoding-type", [""])[0] == "url"
        max_keys = min(max(int(q.get("max-keys", ["1000"])[0]), 1), 1000)
        import bisect

        i = bisect.bisect_right(self.keys, after) if after else bisect.bisect_left(self.keys, prefix)
        page = []
        while i < len(self.keys) and self.keys[i].startswith(prefix) and len(page) < max_keys:
            page.append(self.keys[i])
            i += 1
        more = i < len(self.keys) and self.keys[i].startswith(prefix)
        enc = (lambda k: quote(k, safe="/")) if url_enc else escape
        parts = ['<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>',
                 f"<Name>{self.bucket}</Name><KeyCount>{len(page)}</KeyCount>",
                 "<EncodingType>url</EncodingType>" if url_enc else "",
                 f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>"]
        if more:
            parts.append(f"<NextContinuationToken>{escape(page[-1])}</NextContinuationToken>")
        for k in page:
            parts.append(f"<Contents><Key>{enc(k)}</Key><Size>{len(self.objects[k])}</Size></Contents>")
        parts.append("</ListBucketResult>")
        body = "".join(parts).encode()
        return (f"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def parse_rates(text: str) -> dict:
    """"503=0.1,reset=0.05" -> {"503": 0.1, "reset": 0.05}."""
    rates = {}
    for part in filter(None, text.split(",")):
        kind, _, rate = part.partition("=")
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; choose from {', '.join(FAULT_KINDS)}")
        rates[kind] = float(rate)
    if sum(rates.values()) > 1:
        raise ValueError("fault rates add up to more than 1")
    return rates


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, latency_s: float = 0.0,
                 fault_rate: float = 0.0, faults=DEFAULT_FAULTS, seed: int = 0, store=None,
                 fault_rates: dict | None = None, stall_s: float = 10.0, slow_s: float = 2.0,
                 bandwidth_bps: float = 0.0, tls: ssl.SSLContext | None = None,
                 trickle_s: float = 0.1):
        self.store = store
        # A link of this many bytes/s shared by every reply (0: unlimited):
        # each 64 KiB piece is sent when the link is free for it.
        self.bandwidth_bps = bandwidth_bps
        self.link_free = 0.0
        self.tls = tls
        # The handshake made by the server itself (ssl= at accept) instead of
        # start_tls inside the handler: uvloop's start_tls leaves some
        # handshakes hanging. Failed handshakes are then not counted.
        self.tls_at_accept = False
        self.trickle_s = trickle_s
        self.upstream = (upstream_host, upstream_port)
        self.latency_s = latency_s
        # Per kind: the share of requests that get it.
        if fault_rates:
            self.rates = dict(fault_rates)
        else:
            faults = tuple(faults)
            self.rates = {k: fault_rate / len(faults) for k in faults} if faults else {}
        self.stall_s = stall_s
        self.slow_s = slow_s
        self.rng = random.Random(seed)
        # [match, status, code, times left (-1: always)], see /refuse.
        self.refusals = []
        self.stats = {"requests": 0, "forwarded": 0, "gone": None, "unanswered": 0,
                      "connections": 0, "tls_failures": 0, "tls_resumed": 0, "redirects": 0,
                      "refused": 0,
                      **{f"fault_{k}": 0 for k in FAULT_KINDS}}
        self.host = "127.0.0.1"
        self.port = 0
        self.server = None
        self.clients = set()  # writers of open client connections
        self.gone = None      # None, "refuse" or "blackhole"
        self.back = asyncio.Event()

    def pick_fault(self):
        r = self.rng.random()
        for kind, rate in self.rates.items():
            if r < rate:
                return kind
            r -= rate
        return None

    async def send(self, writer, data: bytes) -> None:
        if self.bandwidth_bps <= 0:
            writer.write(data)
            await writer.drain()
            return
        loop = asyncio.get_running_loop()
        step = 1 << 16
        for i in range(0, len(data), step):
            piece = data[i:i + step]
            now = loop.time()
            start = max(now, self.link_free)
            self.link_free = start + len(piece) / self.bandwidth_bps
            if self.link_free > now:
                await asyncio.sleep(self.link_free - now)
            writer.write(piece)
            await writer.drain()

    async def listen(self):
        self.server = await asyncio.start_server(self.handle, self.host, self.port, limit=1 << 20,
                                                 backlog=1024, reuse_address=True,
                                                 ssl=self.tls if self.tls_at_accept else None)
        self.port = self.server.sockets[0].getsockname()[1]

    async def go_away(self, mode: str):
        """The server disappears: refuse (closed port, open connections
        reset) or blackhole (nothing is answered any more)."""
        if self.gone is not None:
            return
        self.gone = mode
        self.stats["gone"] = mode
        self.back = asyncio.Event()
        if mode == "refuse":
            self.server.close()
            self.server = None
            for w in list(self.clients):
                reset(w)

    async def come_back(self):
        if self.gone is None:
            return
        if self.server is None:
            await self.listen()
        self.gone = None
        self.stats["gone"] = None
        self.back.set()

    async def hold(self, seconds: float) -> None:
        """A stalled reply: nothing sent for `seconds`."""
        await asyncio.sleep(seconds)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        if self.gone == "refuse":
            reset(writer)
            return
        self.stats["connections"] += 1
        if self.tls is not None and not self.tls_at_accept:
            try:
                await writer.start_tls(self.tls)
            except (ssl.SSLError, ConnectionError, OSError):
                self.stats["tls_failures"] += 1
                writer.transport.abort()
                return
            ssl_object = writer.get_extra_info("ssl_object")
            if ssl_object is not None and ssl_object.session_reused:
                self.stats["tls_resumed"] += 1
        self.clients.add(writer)
        up_reader = up_writer = None
        try:
            # Bounded: a client connection serves at most this many requests.
            for _ in range(10_000_000):
                head = await read_head(reader)
                if head is None:
                    return
                first, headers = parse_head(head)
                method, path = first.split(" ")[0], first.split(" ")[1]
                body, _ = await read_body(reader, headers)
                if path.startswith("/__proxy__/stats"):
                    data = json.dumps(self.stats).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
                    await writer.drain()
                    continue
                self.stats["requests"] += 1
                if path.startswith("/__redirect__/"):
                    self.stats["redirects"] += 1
                    writer.write(b"HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n"
                                 % path[len("/__redirect__"):].encode("latin-1"))
                    await writer.drain()
                    continue
                if self.gone == "blackhole":
                    # Read, never answered: the client's read timeout has to
                    # notice. Once back, this connection is dropped.
                    self.stats["unanswered"] += 1
                    await self.back.wait()
                    reset(writer)
                    return
                if self.gone == "refuse":
                    reset(writer)
                    return
                refusal = next((r for r in self.refusals
                                if r[3] != 0 and r[0] in f"{method} {path}"), None)
                if refusal is not None:
                    refusal[3] -= 1 if refusal[3] > 0 else 0
                    self.stats["refused"] += 1
                    writer.write(error_reply(refusal[1], refusal[2], "refused by the fault proxy"))
                    await writer.drain()
                    continue
                if self.latency_s > 0:
                    await asyncio.sleep(self.latency_s)
                fault = self.pick_fault()
                if fault is not None:
                    self.stats[f"fault_{fault}"] += 1
                if fault == "503":
                    writer.write(error_reply(503, "SlowDown", "Please reduce your request rate."))
                    await writer.drain()
                    continue
                if fault == "500":
                    writer.write(error_reply(500, "InternalError",
                                             "We encountered an internal error. Please try again."))
                    await writer.drain()
                    continue
                if fault == "reset":
                    reset(writer)
                    return
                if fault == "stall":
                    # Nothing at all for stall_s, then the reply as usual.
                    await self.hold(self.stall_s)
                if self.store is not None:
                    await self.send(writer, self.store.reply(method, path))
                    self.stats["forwarded"] += 1
                    continue
                if up_writer is None:
                    up_reader, up_writer = await asyncio.open_connection(*self.upstream, limit=1 << 20)
                up_writer.write(head + body)
                await up_writer.drain()
                rhead = await read_head(up_reader)
                if rhead is None:
                    raise HttpError("upstream closed the connection")
                rfirst, rheaders = parse_head(rhead)
                status = int(rfirst.split(" ")[1])
                rbody, close_delimited = await read_body(up_reader, rheaders, method, status)
                self.stats["forwarded"] += 1
                upstream_closes = close_delimited or rheaders.get("connection", "").lower() == "close"
                rhead = keep_alive_head(rhead, len(rbody) if close_delimited else None)
                if fault == "truncate" and len(rbody) > 1:
                    writer.write(rhead + rbody[: len(rbody) // 2])
                    await writer.drain()
                    reset(writer)
                    return
                if fault == "stall_body" and len(rbody) > 1:
                    # The head and half the body, then silence, then the rest.
                    writer.write(rhead + rbody[: len(rbody) // 2])
                    await writer.drain()
                    await self.hold(self.stall_s)
                    writer.write(rbody[len(rbody) // 2:])
                    await writer.drain()
                    if upstream_closes:
                        up_writer.close()
                        up_reader = up_writer = None
                    continue
                if fault == "trickle":
                    # Never silent for long, but far too slow: one byte at a time.
                    for b in rhead + rbody:
                        await asyncio.sleep(self.trickle_s)
                        writer.write(bytes((b,)))
                        await writer.drain()
                    if upstream_closes:
                        up_writer.close()
                        up_reader = up_writer = None
                    continue
                if fault == "slow":
                    # Slow but never silent for long: ten pieces, evenly spread.
                    data = rhead + rbody
                    step = max(1, -(-len(data) // 10))
                    for i in range(0, len(data), step):
                        await asyncio.sleep(self.slow_s / 10)
                        writer.write(data[i:i + step])
                        await writer.drain()
                    if upstream_closes:
                        up_writer.close()
                        up_reader = up_writer = None
                    continue
                writer.write(rhead + rbody)
                await writer.drain()
                if upstream_closes:
                    up_writer.close()
                    up_reader = up_writer = None
                if headers.get("connection", "").lower() == "close":
                    return
        except (HttpError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError,
                OSError):
            writer.transport.abort()
        finally:
            self.clients.discard(writer)
            if up_writer is not None:
                up_writer.close()
            if not writer.transport.is_closing():
                writer.close()


async def control(proxy: FaultProxy, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter) -> None:
    """One request on the control port; see the module's docstring."""
    try:
        head = await read_head(reader)
        if head is None:
            return
        first, _ = parse_head(head)
        method, target = first.split(" ")[0], first.split(" ")[1]
        url = urlsplit(target)
        status, reply = 200, None
        if url.path == "/stats":
            reply = proxy.stats
        elif url.path == "/gone" and method == "POST":
            mode = parse_qs(url.query).get("mode", ["refuse"])[0]
            if mode not in GONE_MODES:
                status, reply = 400, {"error": f"mode must be one of {GONE_MODES}"}
            else:
                await proxy.go_away(mode)
                reply = proxy.stats
        elif url.path == "/tls" and method == "POST" and proxy.tls is not None:
            # Serve another certificate from now on; open connections are
            # reset, so the next requests make new handshakes.
            q = parse_qs(url.query)
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(q["cert"][0], q["key"][0])
            proxy.tls = ctx
            for w in list(proxy.clients):
                reset(w)
            reply = proxy.stats
        elif url.path == "/reset" and method == "POST":
            for w in list(proxy.clients):
                reset(w)
            reply = proxy.stats
        elif url.path == "/back" and method == "POST":
            await proxy.come_back()
            reply = proxy.stats
        elif url.path == "/refuse" and method == "POST":
            q = parse_qs(url.query)
            proxy.refusals.append([q["match"][0], int(q.get("status", ["403"])[0]),
                                   q.get("code", ["AccessDenied"])[0],
                                   int(q.get("times", ["-1"])[0])])
            reply = proxy.stats
        elif url.path == "/allow" and method == "POST":
            proxy.refusals.clear()
            reply = proxy.stats
        else:
            status, reply = 404, {"error": "no such control"}
        data = json.dumps(reply).encode()
        writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (status, len(data), data))
        await writer.drain()
    except (HttpError, ConnectionError, IndexError, ValueError):
        pass
    finally:
        writer.close()


async def serve(proxy: FaultProxy, host: str, port: int, ready=None):
    proxy.host, proxy.port = host, port
    await proxy.listen()
    ctl = await asyncio.start_server(lambda r, w: control(proxy, r, w), host, 0)
    if ready is not None:
        ready(proxy.port, ctl.sockets[0].getsockname()[1])
    async with ctl:
        await ctl.serve_forever()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", default="127.0.0.1:0", help="host:port of the S3 server")
    ap.add_argument("--serve-dir", help="be an in-memory S3 stub serving this folder instead")
    ap.add_argument("--uvloop", action="store_true",
                    help="run on uvloop (pip install uvloop): less CPU per request")
    ap.add_argument("--bucket", default="bench")
    ap.add_argument("--prefix", default="")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--faults", default=",".join(DEFAULT_FAULTS),
                    help="kinds sharing --fault-rate equally")
    ap.add_argument("--fault-rates", default="",
                    help="per-kind rates instead, e.g. 503=0.1,reset=0.05,stall=0.01")
    ap.add_argument("--stall-s", type=float, default=10.0, help="how long a stall holds the reply")
    ap.add_argument("--slow-s", type=float, default=2.0, help="how long a slow reply takes to send")
    ap.add_argument("--trickle-s", type=float, default=0.1,
                    help="seconds between the bytes of a trickled reply")
    ap.add_argument("--tls-cert", help="serve https with this certificate (PEM)")
    ap.add_argument("--tls-key", help="... and this private key (PEM)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bandwidth-bps", type=float, default=0.0,
                    help="stub mode: replies share a link of this many bytes/s (0: unlimited)")
    args = ap.parse_args(argv)
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    host, _, port = args.upstream.rpartition(":")
    faults = [f for f in args.faults.split(",") if f]
    for f in faults:
        if f not in FAULT_KINDS:
            ap.error(f"unknown fault {f!r}; choose from {', '.join(FAULT_KINDS)}")
    try:
        rates = parse_rates(args.fault_rates)
    except ValueError as e:
        ap.error(str(e))
    store = MemoryS3(args.serve_dir, args.bucket, args.prefix) if args.serve_dir else None

    def ready(bound, ctl):
        print(f"PORT {bound} CONTROL {ctl}", flush=True)

    async def run():
        # Made inside the loop: the proxy holds asyncio events.
        proxy = FaultProxy(host, int(port), args.latency_ms / 1000.0, args.fault_rate, faults,
                           args.seed, store, fault_rates=rates, stall_s=args.stall_s,
                           slow_s=args.slow_s, bandwidth_bps=args.bandwidth_bps, tls=tls,
                           trickle_s=args.trickle_s)
        proxy.tls_at_accept = args.uvloop
        await serve(proxy, args.host, args.port, ready)

    runner = asyncio.run
    if args.uvloop:
        import uvloop  # a benchmark's choice: a cheaper event loop, same behaviour
        runner = uvloop.run
    try:
        runner(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
