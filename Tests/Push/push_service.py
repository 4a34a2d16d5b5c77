#!/usr/bin/env python3
"""A stand-in push service on loopback for Errand's doorbell tests.

The real push services (Google's, Mozilla's, Apple's, ntfy.sh) cannot be reached from the test
machines, so this one plays their part, checking what they would check, independently of the
relay's code:

- Web Push (RFC 8030) endpoints `/push/NAME`: the `Authorization: vapid t=JWT, k=KEY` header of
  RFC 8292 (the JWT's ES256 signature verified with `k` by the `cryptography` package; `aud` the
  endpoint's origin, `exp` in the future and at most 24 hours away, `sub` a mailto: or https:
  contact), and the body decrypted as RFC 8291 `aes128gcm` with the `http_ece` package and the
  subscription's private key, which only this service and the "browser" hold.
- ntfy topics `/ntfy/TOPIC` and webhooks `/hook/NAME`: recorded as they come.

`POST /subscribe?behavior=ok|gone|slow|fail-once` makes a subscription (the browser's part) and
answers `{"name", "endpoint", "p256dh", "auth"}`. `gone` answers 410 (the subscription was
dropped), `slow` waits 3 s before answering, `fail-once` answers 500 the first time.
`GET /calls` answers every call received so far, in order, as JSON.

Usage: push_service.py PORT_FILE   (binds 127.0.0.1 on a free port and writes it to PORT_FILE)
"""

import base64
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


LOCK = threading.Lock()
CALLS = []
SUBSCRIPTIONS = {}  # name -> {"key": private key, "auth": bytes, "behavior": str, "calls": int}


def check_vapid(header, origin):
    """What is wrong with an RFC 8292 Authorization header, or None."""
    if not header or not header.startswith("vapid "):
        return "no 'vapid' Authorization header"
    params = {}
    for part in header[len("vapid "):].split(","):
        name, _, value = part.strip().partition("=")
        params[name] = value
    if "t" not in params or "k" not in params:
        return "the vapid header lacks t= or k="
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(params["k"]))
    except ValueError:
        return "k is not a P-256 point"
    pieces = params["t"].split(".")
    if len(pieces) != 3:
        return "the JWT does not have three parts"
    head = json.loads(b64url_decode(pieces[0]))
    if head.get("alg") != "ES256":
        return "the JWT is not ES256"
    raw = b64url_decode(pieces[2])
    if len(raw) != 64:
        return "the JWT signature is not 64 bytes (r || s)"
    signature = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        key.verify(signature, (pieces[0] + "." + pieces[1]).encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "the JWT signature does not verify"
    claims = json.loads(b64url_decode(pieces[1]))
    now = time.time()
    if claims.get("aud") != origin:
        return "aud is %r, not %r" % (claims.get("aud"), origin)
    if not (now < claims.get("exp", 0) <= now + 24 * 3600):
        return "exp is not within the next 24 hours"
    sub = claims.get("sub", "")
    if not (sub.startswith("mailto:") or sub.startswith("https:")):
        return "sub is not a mailto: or https: contact"
    return None


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def origin(self):
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def do_GET(self):
        if self.path == "/calls":
            with LOCK:
                self.answer(200, json.dumps(CALLS).encode())
        else:
            self.answer(404)

    def do_POST(self):
        url = urlparse(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = url.path.strip("/").split("/")
        if parts == ["subscribe"]:
            behavior = parse_qs(url.query).get("behavior", ["ok"])[0]
            key = ec.generate_private_key(ec.SECP256R1())
            auth = os.urandom(16)
            with LOCK:
                name = "s%d" % (len(SUBSCRIPTIONS) + 1)
                SUBSCRIPTIONS[name] = {"key": key, "auth": auth, "behavior": behavior, "calls": 0}
            point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
            self.answer(200, json.dumps({"name": name, "endpoint": self.origin() + "/push/" + name,
                                         "p256dh": b64url(point), "auth": b64url(auth)}).encode())
            return
        call = {"kind": parts[0], "name": "/".join(parts[1:]), "at": time.time(),
                "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body.decode("latin-1")}
        status = 200
        if parts[0] == "push" and len(parts) == 2 and parts[1] in SUBSCRIPTIONS:
            subscription = SUBSCRIPTIONS[parts[1]]
            call["vapidProblem"] = check_vapid(self.headers.get("Authorization"), self.origin())
            try:
                call["payload"] = http_ece.decrypt(body, private_key=subscription["key"], auth_secret=subscription["auth"],
                                                   version="aes128gcm").decode()
            except Exception as error:  # a payload that does not decrypt is what the test must see
                call["payload"] = None
                call["decryptProblem"] = repr(error)
            with LOCK:
                subscription["calls"] += 1
                first = subscription["calls"] == 1
            behavior = subscription["behavior"]
            if behavior == "gone":
                status = 410
            elif behavior == "slow":
                time.sleep(3)
                status = 201
            elif behavior == "fail-once" and first:
                status = 500
            else:
                status = 201
        elif parts[0] not in ("ntfy", "hook"):
            status = 404
        call["status"] = status
        with LOCK:
            CALLS.append(call)
        self.answer(status)


def main():
    # The test process may start this one with SIGTERM blocked or ignored: take it back.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with open(sys.argv[1] + ".tmp", "w") as handle:
        handle.write(str(server.server_address[1]))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
