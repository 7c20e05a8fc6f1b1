#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora: corpus/<target>/seed-<name>.

The seeds are committed; this script is how they were made (run it again after changing a
seed, from anywhere). Each seed is a small, meaningful input: real requests, masked client
frames, the contract's JSON frames, a config file with overrides.
"""

import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- http_head
def crlf(s):
    return s.replace("\n", "\r\n")


TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
body = json.dumps({"conversationId": "s_1_2", "content": "hi", "tempMessageId": "t-1"})
http = {
    "get-authorized": f"GET /api/users/me HTTP/1.1\nHost: localhost:8080\nAuthorization: Bearer {TOKEN}\nAccept: */*\n\n",
    "upgrade": (
        "GET /ws?token=abc%2Edef&x=1+2 HTTP/1.1\nHost: localhost:8080\nUpgrade: websocket\n"
        "Connection: keep-alive, Upgrade\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n"
        "Sec-WebSocket-Version: 13\nOrigin: http://localhost:5173\n\n"
    ),
    "post-json": (
        f"POST /api/messages HTTP/1.1\nHost: localhost\nContent-Type: application/json\n"
        f"Authorization: bearer {TOKEN}\nContent-Length: {len(body)}\n\n{body}"
    ),
    "http10-keep-alive": "GET /health HTTP/1.0\nConnection: Keep-Alive\n\n",
    "connection-close": "GET / HTTP/1.1\nHost: a\nConnection: close\n\n",
    "pipelined": "GET /a HTTP/1.1\nHost: a\n\nGET /b HTTP/1.1\nHost: a\nConnection: close\n\n",
    "duplicate-content-length": "POST /api/messages HTTP/1.1\nHost: a\nContent-Length: 5\nContent-Length: 5\n\nhello",
    "conflicting-content-length": "POST /api/messages HTTP/1.1\nHost: a\nContent-Length: 5, 6\n\nhello!",
    "chunked": "POST /api/messages HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n5\nhello\n0\n\n",
    "preflight": (
        "OPTIONS /api/messages HTTP/1.1\nHost: a\nOrigin: http://localhost:5173\n"
        "Access-Control-Request-Method: POST\nAccess-Control-Request-Headers: authorization, content-type\n\n"
    ),
    "query": "GET /api/conversations/s_1_2/messages?page=1&size=20&q=%E4%BD%A0+x%2&before= HTTP/1.1\nHost: a\n\n",
    "expect-continue": "PUT /api/conversations/g_1/read HTTP/1.1\nHost: a\nExpect: 100-continue\nContent-Length: 12\n\n{\"seqId\":4}\n",
    "partial": "GET /api/users/me HTTP/1.1\nHost: a\nAuthori",
}
for name, text in http.items():
    write("http_head", name, crlf(text))
write("http_head", "bare-lf", b"GET /x HTTP/1.1\nHost: a\n\n")


# ---------------------------------------------------------------- ws_frames
# settings: byte 0 picks max_frame_bytes from
# [8, 16, 125, 126, 127, 200, 1024, 65536, 1048576], byte 1 the read size (0: one read),
# byte 2 how many bytes come with the handshake
KIB = 6  # 1024
MIB = 8  # 1048576
MASK = b"\x37\xfa\x21\x3d"


def frame(opcode, payload=b"", fin=True, masked=True, rsv=0, length=None):
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    m = 0x80 if masked else 0
    if n < 126:
        b += bytes([m | n])
    elif n <= 0xFFFF:
        b += bytes([m | 126]) + struct.pack(">H", n)
    else:
        b += bytes([m | 127]) + struct.pack(">Q", n)
    if masked:
        b += MASK
        payload = bytes(c ^ MASK[i % 4] for i, c in enumerate(payload))
    return b + payload


def close(code=None, reason=""):
    p = b"" if code is None else struct.pack(">H", code) + reason.encode()
    return frame(0x8, p)


def settings(limit, chunk=0, leftover=0):
    return bytes([limit, chunk, leftover])


send = json.dumps({"type": "send-message", "data": {"conversationId": "s_1_2", "content": "hi", "messageType": "text", "tempMessageId": "t-1"}, "timestamp": 1700000000})
ws = {
    "ping-frame": settings(KIB) + frame(0x1, '{"type":"ping"}'),
    "send-message": settings(KIB, 7, 3) + frame(0x1, send),
    "fragmented": settings(KIB, 3) + frame(0x1, '{"type":', fin=False) + frame(0x9, "hb") + frame(0x0, '"ping"}', fin=True),
    "ping-pong": settings(KIB) + frame(0x9, "heartbeat") + frame(0xA, "x") + frame(0x9, ""),
    "close-1000": settings(KIB) + close(1000, "bye"),
    "close-4001": settings(KIB, 1) + frame(0x1, '{"type":"ping"}') + close(4001, "logout"),
    "close-1005": settings(KIB) + close(1005),
    "close-empty": settings(KIB) + close(),
    "close-one-byte": settings(KIB) + frame(0x8, b"\x03"),
    "binary": settings(KIB) + frame(0x2, b"\x00\x01\x02\xff"),
    "too-big": settings(1) + frame(0x1, "x" * 40),
    "too-big-fragments": settings(1, 5) + frame(0x1, "x" * 10, fin=False) + frame(0x0, "y" * 10),
    "huge-header": settings(0) + frame(0x2, b"", length=1 << 20),
    "unmasked": settings(KIB) + frame(0x1, '{"type":"ping"}', masked=False),
    "bad-utf8": settings(KIB) + frame(0x1, b"\xc3\x28 not utf-8"),
    "utf8-split": settings(KIB, 2) + frame(0x1, "é", fin=False) + frame(0x0, "ü€"),
    "len16": settings(KIB, 11, 5) + frame(0x1, json.dumps({"type": "send-message", "data": {"conversationId": "g_1", "content": "z" * 300}})),
    "rsv-bits": settings(KIB) + frame(0x1, "x", rsv=4),
    "reserved-opcode": settings(KIB) + frame(0x3, "x"),
    "control-fragmented": settings(KIB) + frame(0x9, "x", fin=False),
    "after-close": settings(KIB) + close(1001, "going") + frame(0x1, '{"type":"ping"}'),
    "continuation-first": settings(KIB) + frame(0x0, "x"),
}
for name, data in ws.items():
    write("ws_frames", name, data)


# ---------------------------------------------------------------- client_json
frames = {
    "ping": {"type": "ping", "data": {}, "timestamp": 1700000000},
    "ping-bare": {"type": "ping"},
    "send-message": {"type": "send-message", "data": {"conversationId": "s_1_2", "content": "hello", "messageType": "text", "tempMessageId": "t-1"}, "timestamp": 1700000000},
    "send-numbers": {"type": "send-message", "data": {"conversationId": 7, "content": "x", "messageType": 5, "tempMessageId": 9}},
    "send-legacy-type": {"type": "send-message", "data": {"conversationId": "w", "content": "pic", "type": "IMAGE", "messageType": "2"}},
    "send-null-type": {"type": "send-message", "data": {"conversationId": "w", "content": "", "messageType": None}},
    "send-no-conversation": {"type": "send-message", "data": {"content": "x", "tempMessageId": "t9"}},
    "mark-read": {"type": "mark-read", "data": {"conversationId": "g_1", "seqId": "4"}},
    "mark-read-latest": {"type": "mark-read", "data": {"conversationId": "g_1", "seqId": None}},
    "mark-read-negative": {"type": "mark-read", "data": {"conversationId": "g_1", "seqId": -1}},
    "typing": {"type": "typing", "data": {"conversationId": "s_1_2"}, "timestamp": 1700000000},
    "stop-typing-number": {"type": "stop-typing", "data": {"conversationId": 7}},
    "typing-no-data": {"type": "typing"},
    "unknown-type": {"type": "dance", "data": {}},
}
for name, v in frames.items():
    write("client_json", name, json.dumps(v))
write("client_json", "http-body", json.dumps({"conversationId": "world", "content": "hi all", "type": "file", "tempMessageId": "abc"}))
write("client_json", "unicode", '{"type":"send-message","data":{"conversationId":"s_1_2","content":"caf\\u00e9 \\ud83d\\ude00 \u4f60\u597d","tempMessageId":"\u00e9"}}')
write("client_json", "event-fields", "a message\nt-42\ng_7\nalice \u00e9\n")
write("client_json", "not-json", "{not json")


# ---------------------------------------------------------------- config
SAMPLE = """\
[node]
id = "gw-1"
worker_id = 1

[auth]
jwt_secret = "0123456789abcdef0123456789abcdef"
token_ttl_secs = 604800
argon2_memory_kib = 19456
argon2_iterations = 2

[store]
url = "sqlite://data/ringchat.db"
max_connections = 8

[cache]
url = "memory://"
session_ttl_secs = 1800
presence_ttl_secs = 300

[bus]
url = "memory://"
partitions = 8
partition_capacity = 16384

[discovery]
url = "static://"
ttl_secs = 10
[discovery.services]
im-logic = ["127.0.0.1:9001"]

[logic]
listen = "127.0.0.1:9001"
large_group_threshold = 500
max_content_bytes = 65536

[task]
notifier = "webhook"
webhook_url = "http://127.0.0.1:9/hook"

[gateway]
listen = "0.0.0.0:8080"
workers = 2
driver = "auto"
max_frame_bytes = 1048576
cors_origins = ["http://localhost:5173", "https://chat.example"]
"""
write("config", "sample", SAMPLE + "\0" + "LOGIC__LARGE_GROUP_THRESHOLD=100\nGATEWAY__CORS_ORIGINS=http://a, http://b\n")
write("config", "env-only", "\0NODE__ID=gw-2\nRINGCHAT_AUTH__JWT_SECRET=0123456789abcdef0123\nGATEWAY__PIN_WORKERS=true\nCONFIG=ignored.toml\n")
write("config", "minimal", '[node]\nid = "a"\n')
write("config", "bad-value", "\0BUS__PARTITIONS=0\n")
write("config", "crosses-value", 'node = "x"\n\0NODE__ID=y\n')
# one setting both ways: 0x01, a byte picking the setting (in the order of the defaults'
# JSON), the value; none of these is a number or a boolean for a string setting
write("config", "one-setting-text", b"\x01\x00gw-2.example")
write("config", "one-setting-list", b"\x01\x30http://localhost:5173, https://chat.example")
write("config", "one-setting-number", b"\x01\x41" + b"250")
