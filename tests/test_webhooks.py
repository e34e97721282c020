"""The webhook core (``shared/webhooks.py``): Standard Webhooks signatures checked by the independent reference
implementation (``standardwebhooks``), the SSRF guard, single attempts against a real local HTTP server, retry
spacing and the event body."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as ReferenceVerificationError

from shared.webhooks import (
    DEFAULT_RETRY_SCHEDULE_S,
    AllowList,
    AttemptResult,
    WebhookUrlRefused,
    WebhookVerificationError,
    build_event,
    check_webhook_url,
    event_body,
    generate_secret,
    parse_retry_after,
    parse_secrets,
    post_event,
    retry_delay_s,
    sign,
    signature_headers,
    verify_signature,
)

EVENT = {"type": "job.succeeded", "timestamp": "2026-01-01T00:00:00Z", "data": {"id": "j1", "text": "café — 日本語"}}

# --- secrets and signatures ------------------------------------------------------------------------------------


def signed(secret: str, *, msg_id: str = "msg_1", timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    body = event_body(EVENT)
    ts = int(time.time()) if timestamp is None else timestamp
    return body, signature_headers(parse_secrets(secret), msg_id, ts, body)


def test_signature_verified_by_the_reference_implementation() -> None:
    secret = generate_secret()
    body, headers = signed(secret)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"}
    assert headers["webhook-signature"].startswith("v1,")
    assert " " not in headers["webhook-signature"]  # one key, one signature
    assert Webhook(secret).verify(body, headers) == EVENT
    with pytest.raises(ReferenceVerificationError):
        Webhook(generate_secret()).verify(body, headers)
    with pytest.raises(ReferenceVerificationError):
        Webhook(secret).verify(body.replace(b"j1", b"j2"), headers)


def test_rotation_signs_with_every_key_and_each_alone_verifies() -> None:
    old, new = generate_secret(), generate_secret()
    body, headers = signed(f"{old}, {new}")
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(body, headers) == EVENT
    assert Webhook(new).verify(body, headers) == EVENT
    verify_signature(headers, body, old)
    verify_signature(headers, body, new)
    with pytest.raises(ReferenceVerificationError):
        Webhook(generate_secret()).verify(body, headers)


def test_verify_signature_accepts_what_the_reference_implementation_signs() -> None:
    secret = generate_secret()
    body = event_body(EVENT)
    now = datetime.now(tz=UTC).replace(microsecond=0)
    reference = Webhook(secret).sign("msg_ref", now, body.decode())
    headers = {"Webhook-Id": "msg_ref", "Webhook-Timestamp": str(int(now.timestamp())), "Webhook-Signature": reference}
    verify_signature(headers, body, secret)  # header names are case-insensitive
    assert sign(parse_secrets(secret), "msg_ref", int(now.timestamp()), body) == reference


def test_verify_signature_refuses_tampering_wrong_secrets_and_stale_timestamps() -> None:
    secret = generate_secret()
    ts = 1_700_000_000
    body, headers = signed(secret, timestamp=ts)
    verify_signature(headers, body, secret, now=ts + 299)
    verify_signature(headers, body, secret, now=ts - 299)
    verify_signature(headers, body, f"{generate_secret()},{secret}", now=ts)  # the receiver rotating too

    with pytest.raises(WebhookVerificationError, match="no matching"):
        verify_signature(headers, body + b" ", secret, now=ts)
    with pytest.raises(WebhookVerificationError, match="no matching"):
        verify_signature(headers, body, generate_secret(), now=ts)
    with pytest.raises(WebhookVerificationError, match="no matching"):
        verify_signature({**headers, "webhook-id": "msg_2"}, body, secret, now=ts)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_signature(headers, body, secret, now=ts + 301)
    with pytest.raises(WebhookVerificationError, match="future"):
        verify_signature(headers, body, secret, now=ts - 301)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_signature(headers, body, secret, now=ts + 61, tolerance_s=60)
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify_signature({k: v for k, v in headers.items() if k != "webhook-signature"}, body, secret, now=ts)
    with pytest.raises(WebhookVerificationError, match="integer"):
        verify_signature({**headers, "webhook-timestamp": "1.7e9"}, body, secret, now=ts)
    # a re-signed (replayed) old message with a fresh timestamp does not match its old signature
    with pytest.raises(WebhookVerificationError):
        verify_signature({**headers, "webhook-timestamp": str(ts + 1000)}, body, secret, now=ts + 1000)


def test_verify_signature_skips_malformed_entries_without_crashing() -> None:
    secret = generate_secret()
    ts = 1_700_000_000
    body, headers = signed(secret, timestamp=ts)
    good = headers["webhook-signature"]
    junk = "v2,abc v1 v1, v1,!!!notbase64!!! nonsense"
    with pytest.raises(WebhookVerificationError):
        verify_signature({**headers, "webhook-signature": junk}, body, secret, now=ts)
    verify_signature({**headers, "webhook-signature": f"{junk} {good}"}, body, secret, now=ts)


def test_parse_secrets_separators_and_padding() -> None:
    a, b, c = generate_secret(), generate_secret(), generate_secret()
    keys = parse_secrets(f" {a},{b}\n{c} ,, ")
    assert len(keys) == 3
    assert all(len(key) == 32 for key in keys)
    assert parse_secrets("") == []
    assert parse_secrets(a.rstrip("=")) == parse_secrets(a)  # unpadded base64 is accepted, as the reference does
    assert Webhook(a)._whsecret == parse_secrets(a)[0]


@pytest.mark.parametrize(
    ("bad", "position", "why"),
    [
        ("secret-without-prefix-AAAAAAAAAAAAAAAAAAAAAAAA", 2, "does not start"),
        ("whsec_not*valid*base64*at*all*sorry*!!", 2, "not valid base64"),
        ("whsec_c2hvcnQ=", 2, "too short"),
    ],
)
def test_parse_secrets_errors_name_the_position_never_the_secret(bad: str, position: int, why: str) -> None:
    with pytest.raises(ValueError, match=why) as info:
        parse_secrets(f"{generate_secret()},{bad}")
    text = str(info.value)
    assert f"#{position}" in text
    assert bad not in text
    assert bad.removeprefix("whsec_") not in text
    assert info.value.__cause__ is None  # nothing chained that could carry the secret
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_generate_secret() -> None:
    first, second = generate_secret(), generate_secret()
    assert first.startswith("whsec_")
    assert first != second
    assert len(parse_secrets(first)[0]) == 32


def test_sign_needs_a_key_and_a_clean_message_id() -> None:
    with pytest.raises(ValueError, match="key"):
        sign([], "msg_1", 1, b"{}")
    with pytest.raises(ValueError, match="message id"):
        sign(parse_secrets(generate_secret()), "msg 1\r\nx: y", 1, b"{}")


# --- the SSRF guard ---------------------------------------------------------------------------------------------

NO_ALLOW = AllowList()


def everything_public(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]


REFUSED = [
    "http://127.0.0.1/",
    "http://127.0.0.1:8080/hook",
    "http://localhost/",
    "http://LOCALHOST./",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://[::1]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[fd00:ec2::254]/",
    "http://[ff02::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
    "https://[2002:c0a8:101::1]/",  # 6to4 of 192.168.1.1
    "http://2130706433/",
    "http://0x7f.0.0.1/",
    "http://0x7f.1/",
    "http://017700000001/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://127.0.0.1.5/",
    "http://1.2.3.4.5/",
    "file:///etc/passwd",
    "gopher://x",
    "ftp://x",
    "dict://x:11211/",
    "javascript:alert(1)",
    "http://user:pass@example.com/",
    "http://user@example.com/",
    "http://ex\\@127.0.0.1/",
    "http://exa mple.com/",
    "http:///no-host",
    "http://",
    "http://[fe80::1%25eth0]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata.google.internal./",
    "http://example.com:99999/",
    "http://example.com/" + "a" * 2048,
]


@pytest.mark.parametrize("url", REFUSED)
def test_refused_urls(url: str) -> None:
    # The resolver claims every name is public: literal, numeric and mapped forms must be refused regardless.
    with pytest.raises(WebhookUrlRefused) as info:
        check_webhook_url(url, NO_ALLOW, resolve=everything_public if "localhost" not in url.lower() else _os_resolve)
    error = info.value
    assert error.code == "webhook_url_refused"
    assert error.status_code == 422
    assert error.message.startswith("webhook_url ")
    assert error.details["field"] == "webhook_url"
    assert "Traceback" not in error.message
    assert len(error.message) < 200


def _os_resolve(host: str, port: int) -> list[str]:
    from shared.webhooks import resolve_host

    return resolve_host(host, port)


@pytest.mark.parametrize(
    ("url", "reason", "shown"),
    [
        ("http://127.0.0.1/", "loopback", "127.0.0.1"),
        ("http://169.254.169.254/", "cloud metadata", "169.254.169.254"),
        ("http://[::ffff:127.0.0.1]/", "loopback", "127.0.0.1"),
        ("http://100.64.1.1/", "shared (CGNAT)", "100.64.1.1"),
        ("http://0.0.0.0/", "unspecified", "0.0.0.0"),
        ("http://2130706433/", "numeric_form", "127.0.0.1"),
        ("http://0x7f.0.0.1/", "numeric_form", "127.0.0.1"),
        ("file:///etc/passwd", "scheme", "file"),
        ("http://user:pass@example.com/", "credentials", "user name or password"),
    ],
)
def test_refusals_say_why(url: str, reason: str, shown: str) -> None:
    with pytest.raises(WebhookUrlRefused) as info:
        check_webhook_url(url, NO_ALLOW, resolve=everything_public)
    assert info.value.details["reason"] == reason
    assert shown in info.value.message
    assert "user:pass" not in info.value.message  # credentials are not echoed


def fake_dns(table: dict[str, list[str]]) -> Any:
    calls: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append((host, port))
        return table.get(host, [])

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize(
    "addresses",
    [
        ["127.0.0.1"],
        ["::1"],
        ["10.0.0.7"],
        ["93.184.216.34", "10.0.0.7"],  # a mix of public and private
        ["2606:2800:220:1::1", "fe80::1%eth0"],
        ["93.184.216.34", "::ffff:192.168.0.1"],
        ["169.254.169.254"],
        ["not-an-address"],
    ],
)
def test_names_resolving_to_non_public_addresses_are_refused(addresses: list[str]) -> None:
    resolve = fake_dns({"evil.example": addresses})
    with pytest.raises(WebhookUrlRefused) as info:
        check_webhook_url("https://evil.example/hook", NO_ALLOW, resolve=resolve)
    assert resolve.calls == [("evil.example", 443)]
    assert "evil.example" in info.value.message
    for address in addresses:  # the server's view of DNS is not revealed
        assert address not in info.value.message


def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(WebhookUrlRefused, match="does not resolve"):
        check_webhook_url("http://nowhere.example/", NO_ALLOW, resolve=fake_dns({}))


def test_public_addresses_are_accepted() -> None:
    resolve = fake_dns({"receiver.example": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]})
    assert check_webhook_url("https://receiver.example:8443/hooks?x=1", NO_ALLOW, resolve=resolve) == [
        "93.184.216.34",
        "2606:2800:220:1:248:1893:25c8:1946",
    ]
    assert resolve.calls == [("receiver.example", 8443)]
    assert check_webhook_url("http://93.184.216.34/", NO_ALLOW, resolve=fake_dns({})) == ["93.184.216.34"]
    assert check_webhook_url("http://[2606:4700::1111]/", NO_ALLOW, resolve=fake_dns({})) == ["2606:4700::1111"]
    assert check_webhook_url("http://[64:ff9b::5db8:d822]/", NO_ALLOW, resolve=fake_dns({}))  # NAT64 of a public one


def test_allow_list_parse() -> None:
    allow = AllowList.parse(" localhost, Receiver.Internal. 10.0.0.0/8,127.0.0.1\n[::1],fd00::/8 ")
    assert allow.hosts == frozenset({"localhost", "receiver.internal"})
    assert [str(net) for net in allow.networks] == ["10.0.0.0/8", "127.0.0.1/32", "::1/128", "fd00::/8"]
    assert AllowList.parse("") == AllowList()
    for bad in ("http://x/", "*.internal", "host:8080", "2130706433", "0x7f.1"):
        with pytest.raises(ValueError, match="allow-list entry"):
            AllowList.parse(bad)


def test_allow_list_by_host() -> None:
    allow = AllowList.parse("localhost,receiver.internal")
    assert "127.0.0.1" in check_webhook_url("http://localhost:8080/hook", allow)
    resolve = fake_dns({"receiver.internal": ["10.1.2.3"]})
    assert check_webhook_url("http://receiver.internal/", allow, resolve=resolve) == ["10.1.2.3"]
    with pytest.raises(WebhookUrlRefused):
        check_webhook_url("http://other.internal/", allow, resolve=fake_dns({"other.internal": ["10.1.2.3"]}))
    with pytest.raises(WebhookUrlRefused, match="http or https"):
        check_webhook_url("ftp://localhost/", allow)  # an allowed host still needs http(s)
    with pytest.raises(WebhookUrlRefused, match="does not resolve"):
        check_webhook_url("http://receiver.internal/", allow, resolve=fake_dns({}))


def test_allow_list_by_network_must_cover_every_address() -> None:
    allow = AllowList.parse("127.0.0.1")
    assert check_webhook_url("http://127.0.0.1:9000/", allow) == ["127.0.0.1"]
    assert check_webhook_url("http://[::ffff:127.0.0.1]/", allow) == ["::ffff:7f00:1"]
    with pytest.raises(WebhookUrlRefused):
        check_webhook_url("http://127.0.0.2/", allow)
    mixed = fake_dns({"two.internal": ["127.0.0.1", "10.0.0.1"]})
    with pytest.raises(WebhookUrlRefused, match="private"):
        check_webhook_url("http://two.internal/", allow, resolve=mixed)
    assert check_webhook_url("http://two.internal/", AllowList.parse("127.0.0.0/8,10.0.0.0/8"), resolve=mixed)
    # allowed networks do not unlock non-standard numeric forms or the metadata service by name
    with pytest.raises(WebhookUrlRefused, match="non-standard"):
        check_webhook_url("http://2130706433/", AllowList.parse("127.0.0.0/8"))
    with pytest.raises(WebhookUrlRefused, match="metadata"):
        check_webhook_url("http://metadata.google.internal/", AllowList.parse("0.0.0.0/0,::/0"))


# --- one attempt against a real HTTP server ---------------------------------------------------------------------


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    release: threading.Event
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def hits(self, path: str) -> list[tuple[str, dict[str, str], bytes]]:
        with self.lock:
            return [request for request in self.requests if request[0] == path]


def make_handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.lock:
                receiver.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            with contextlib.suppress(OSError):  # the client gave up (timeouts): nothing to answer
                self._answer()

        def _answer(self) -> None:
            path = self.path
            if path == "/slow":
                receiver.release.wait(5)
            if path == "/trickle":  # a status line, then one header every 0.1 s: no single read ever times out
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for i in range(30):
                    if receiver.release.wait(0.1):
                        return
                    self.wfile.write(f"X-Pad-{i}: x\r\n".encode())
                self.wfile.write(b"Content-Length: 0\r\n\r\n")
                return
            status, headers = {
                "/fail": (500, {}),
                "/gone": (410, {}),
                "/redirect": (302, {"Location": receiver.url("/target")}),
                "/busy": (429, {"Retry-After": "7"}),
                "/down": (
                    503,
                    {"Retry-After": format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)},
                ),
            }.get(path, (200, {}))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    receiver = Receiver(server, threading.Event())
    server.RequestHandlerClass = make_handler(receiver)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    # follow_redirects=True on purpose: post_event must not follow them whatever the client's default
    with httpx.Client(trust_env=False, follow_redirects=True) as client:
        yield client


def test_post_event_delivers_a_signed_event(receiver: Receiver, http: httpx.Client) -> None:
    secret = generate_secret()
    body, headers = signed(secret, msg_id="msg_delivered")
    before = time.time()
    result = post_event(http, receiver.url("/ok"), body, headers, timeout_s=5)
    assert result.status_code == 200
    assert result.delivered
    assert not result.stop
    assert result.error is None
    assert result.retry_after_s is None
    assert before <= result.at <= time.time()
    assert 0 < result.duration_ms < 5000
    [(_, got_headers, got_body)] = receiver.hits("/ok")
    assert got_body == body
    assert Webhook(secret).verify(got_body, got_headers) == EVENT  # as a receiver would check it
    verify_signature(got_headers, got_body, secret)
    assert got_headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("path", "status", "delivered", "stop", "error"),
    [
        ("/fail", 500, False, False, None),
        ("/gone", 410, False, True, None),
        ("/redirect", 302, False, False, "redirect not followed (302)"),
    ],
)
def test_post_event_failures(
    receiver: Receiver, http: httpx.Client, path: str, status: int, delivered: bool, stop: bool, error: str | None
) -> None:
    result = post_event(http, receiver.url(path), b"{}", {"content-type": "application/json"}, timeout_s=5)
    assert (result.status_code, result.delivered, result.stop, result.error) == (status, delivered, stop, error)
    assert len(receiver.hits(path)) >= 1


def test_post_event_does_not_follow_redirects(receiver: Receiver, http: httpx.Client) -> None:
    result = post_event(http, receiver.url("/redirect"), b"{}", {}, timeout_s=5)
    assert result.status_code == 302
    assert not result.delivered
    assert receiver.hits("/target") == []


def test_post_event_times_out(receiver: Receiver, http: httpx.Client) -> None:
    result = post_event(http, receiver.url("/slow"), b"{}", {}, timeout_s=0.5)
    assert result.error == "timeout"
    assert result.status_code is None
    assert not result.delivered
    assert 400 <= result.duration_ms < 2500


def test_post_event_timeout_is_total_even_when_the_receiver_trickles(receiver: Receiver, http: httpx.Client) -> None:
    # every read gets a byte within 0.1 s, so per-read timeouts alone would wait 3 s and report a 200
    result = post_event(http, receiver.url("/trickle"), b"{}", {}, timeout_s=0.5)
    assert result.error == "timeout"
    assert result.status_code is None
    assert result.duration_ms < 1500


def test_post_event_retry_after(receiver: Receiver, http: httpx.Client) -> None:
    busy = post_event(http, receiver.url("/busy"), b"{}", {}, timeout_s=5)
    assert (busy.status_code, busy.retry_after_s) == (429, 7.0)
    down = post_event(http, receiver.url("/down"), b"{}", {}, timeout_s=5)
    assert down.status_code == 503
    assert down.retry_after_s is not None
    assert 115 <= down.retry_after_s <= 121


def test_post_event_connection_refused(http: httpx.Client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = post_event(http, f"http://127.0.0.1:{port}/", b"{}", {}, timeout_s=2)
    assert result.status_code is None
    assert result.error == "connection refused"
    assert not result.delivered
    assert not result.stop


def test_post_event_never_raises_for_bad_urls(http: httpx.Client) -> None:
    for url in ("gopher://x/", "http:///no-host", "http://127.0.0.1:0/"):
        result = post_event(http, url, b"{}", {}, timeout_s=2)
        assert result.status_code is None
        assert result.error


def test_attempt_result_properties() -> None:
    def result(status: int | None) -> AttemptResult:
        return AttemptResult(at=0.0, duration_ms=1.0, status_code=status, error=None, retry_after_s=None)

    assert [result(s).delivered for s in (200, 204, 299, 300, 302, 410, 500, None)] == [True] * 3 + [False] * 5
    assert [result(s).stop for s in (200, 404, 410, None)] == [False, False, True, False]


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(format_datetime(datetime.fromtimestamp(now + 90, UTC), usegmt=True), now=now) == 90.0
    assert parse_retry_after(format_datetime(datetime.fromtimestamp(now - 90, UTC), usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None
    assert parse_retry_after(None) is None


# --- retries ----------------------------------------------------------------------------------------------------


def test_default_schedule() -> None:
    assert DEFAULT_RETRY_SCHEDULE_S == (5, 300, 1800, 7200, 18000, 36000)


def test_retry_delay_follows_the_schedule_within_jitter() -> None:
    rng = random.Random(1234)
    schedule = DEFAULT_RETRY_SCHEDULE_S
    for attempt, base in enumerate(schedule, start=1):
        delays = [retry_delay_s(attempt, schedule, rng=rng) for _ in range(200)]
        assert all(d is not None and base * 0.9 <= d <= base * 1.1 for d in delays), (attempt, base)
        assert len(set(delays)) > 100  # jittered, not constant
    assert retry_delay_s(len(schedule) + 1, schedule) is None  # exhausted: give up
    assert retry_delay_s(1, ()) is None
    assert retry_delay_s(2, (1.0, 2.0), jitter=0) == 2.0
    with pytest.raises(ValueError, match="from 1"):
        retry_delay_s(0, schedule)


def test_retry_delay_honours_retry_after() -> None:
    rng = random.Random(5)
    schedule = DEFAULT_RETRY_SCHEDULE_S
    assert retry_delay_s(1, schedule, retry_after_s=7, rng=rng) == 7.0  # 5 s ± 10% < 7 s
    delay = retry_delay_s(2, schedule, retry_after_s=7, rng=rng)  # 300 s ± 10% > 7 s
    assert delay is not None
    assert 270 <= delay <= 330
    assert retry_delay_s(1, schedule, retry_after_s=10**9) == 24 * 3600  # capped
    assert retry_delay_s(len(schedule) + 1, schedule, retry_after_s=7) is None


# --- events -----------------------------------------------------------------------------------------------------


def api_job(**changes: Any) -> dict[str, Any]:
    base = "http://api.example/api/v1/jobs/j-1"
    job: dict[str, Any] = {
        "id": "j-1",
        "task": "t2st",
        "status": "succeeded",
        "src_lang": "eng",
        "tgt_lang": "fra",
        "result": {"text": "Bonjour, ça va ?", "audio": {"url": f"{base}/audio", "format": "wav"}},
        "error": None,
        "webhook_url": "https://receiver.example/hook",
        "links": {"self": base, "events": f"{base}/events", "audio": f"{base}/audio"},
    }
    job.update(changes)
    return job


def test_build_event_with_small_text() -> None:
    event = build_event(api_job(), event_type="job.succeeded", base_url="http://ignored", now=1_767_225_600.0)
    assert event == {
        "type": "job.succeeded",
        "timestamp": "2026-01-01T00:00:00Z",
        "data": {
            "id": "j-1",
            "task": "t2st",
            "status": "succeeded",
            "src_lang": "eng",
            "detected_src_lang": None,  # src_lang "auto": the detected code and its confidence
            "detected_src_lang_confidence": None,
            "tgt_lang": "fra",
            "error": None,
            "text": "Bonjour, ça va ?",
            "links": {
                "self": "http://api.example/api/v1/jobs/j-1",
                "audio": "http://api.example/api/v1/jobs/j-1/audio",
            },
        },
    }


def test_build_event_omits_large_text() -> None:
    job = api_job(result={"text": "x" * 4097, "audio": None}, links={"self": "http://api.example/api/v1/jobs/j-1"})
    data = build_event(job, event_type="job.succeeded", base_url=None)["data"]
    assert "text" not in data
    assert data["text_truncated"] is True
    assert "audio" not in data["links"]
    assert (
        build_event(job, event_type="job.succeeded", base_url=None, max_text_chars=5000)["data"]["text"] == "x" * 4097
    )


def test_build_event_for_failed_and_expired_jobs() -> None:
    error = {"code": "inference_failed", "message": "the model failed"}
    failed = build_event(api_job(status="failed", result=None, error=error), event_type="job.failed", base_url=None)
    assert failed["data"]["error"] == error
    assert "text" not in failed["data"]
    assert "text_truncated" not in failed["data"]
    # what the worker still knows once the job record has expired: links come from the base URL
    gone = build_event(
        {"id": "j-2", "status": "cancelled", "links": {}}, event_type="job.cancelled", base_url="http://api.example/"
    )
    assert gone["data"]["links"] == {"self": "http://api.example/api/v1/jobs/j-2"}
    assert gone["data"]["task"] is None
    datetime.fromisoformat(gone["timestamp"])
    assert gone["timestamp"].endswith("Z")
    with pytest.raises(ValueError, match="event type"):
        build_event(api_job(), event_type="job.exploded", base_url=None)


def test_event_body_is_compact_utf8_json() -> None:
    body = event_body(EVENT)
    assert body == json.dumps(EVENT, separators=(",", ":"), ensure_ascii=False).encode()
    assert b": " not in body
    assert "café".encode() in body
    assert json.loads(body) == EVENT
    with pytest.raises(ValueError, match="JSON"):
        event_body({"x": float("nan")})
