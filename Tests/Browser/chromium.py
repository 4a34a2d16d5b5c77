"""Headless Chromium driven over the DevTools protocol (--remote-debugging-pipe), standard
library only, for the web companion's browser tests.

A `Browser` is one Chromium process with its own throwaway profile; `Browser.page()` opens a tab
and returns a `Page`, which evaluates JavaScript (awaiting promises), waits for conditions, sizes
the viewport like a phone, takes screenshots and can cut the network. Console errors and
uncaught exceptions are collected so a failing test can show them.
"""

import base64
import fcntl
import functools
import http.server
import json
import os
import select
import shutil
import subprocess
import tempfile
import threading
import time


class BrowserError(Exception):
    """Chromium could not do what the test asked (with what the page logged, when it helps)."""


class Pipe:
    """The DevTools protocol over Chromium's --remote-debugging-pipe: NUL-terminated JSON."""

    def __init__(self, write_fd, read_fd):
        self.write_fd, self.read_fd = write_fd, read_fd
        self.buffer = b""
        self.next_id = 0
        self.events = []

    def send(self, method, params=None, session=None):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self.write_fd, data):]
        return self.next_id

    def receive(self, deadline):
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise EOFError("Chromium closed the DevTools pipe")
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method, params=None, session=None, timeout=30):
        deadline = time.monotonic() + timeout
        request = self.send(method, params, session)
        while True:
            message = self.receive(deadline)
            if message.get("id") == request:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)


def _high_fd(fd):
    """The same pipe end on a descriptor >= 10, so that moving it to 3 or 4 clobbers nothing."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class Browser:
    """One headless Chromium with a fresh profile; use as a context manager."""

    def __init__(self, chromium=None):
        self.chromium = chromium or shutil.which("chromium") or shutil.which("chromium-browser")
        if not self.chromium:
            raise BrowserError("chromium is not installed (on Debian/Ubuntu: apt-get install chromium)")

    def __enter__(self):
        self.profile = tempfile.mkdtemp(prefix="errand-browser-")
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        child_r, child_w = _high_fd(to_r), _high_fd(from_w)
        # Chromium reads commands on fd 3 and writes replies on fd 4.
        command = ["bash", "-c", f'exec "$@" 3<&{child_r} 4>&{child_w} {child_r}<&- {child_w}>&-', "bash",
                   self.chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", "--remote-debugging-pipe",
                   f"--user-data-dir={self.profile}", "about:blank"]
        self.log = open(os.path.join(self.profile, "chromium.log"), "w+")
        self.process = subprocess.Popen(command, pass_fds=(child_r, child_w), stdin=subprocess.DEVNULL,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        os.close(child_r)
        os.close(child_w)
        self.pipe = Pipe(to_w, from_r)
        return self

    def __exit__(self, *exc):
        try:
            self.pipe.send("Browser.close")
        except OSError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def page(self, width=390, height=844, scale=3):
        """A new tab, sized like a phone (390×844 CSS pixels by default)."""
        target = self.pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, target, session)
        for domain in ("Runtime", "Log", "Page", "Network"):
            page.call(f"{domain}.enable")
        page.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": True})
        page.call("Emulation.setTouchEmulationEnabled", {"enabled": True})
        return page

    def grant(self, origin, permissions):
        self.pipe.call("Browser.grantPermissions", {"origin": origin, "permissions": permissions})

    def deliver_push(self, origin, data="", timeout=20):
        """Delivers a push message to the origin's service worker as a push service would (no
        push service can be reached here). Returns how long the delivery call took, in seconds."""
        if not getattr(self, "worker_session", None):
            # The ServiceWorker domain lives on page targets: a blank tab of its own, in the
            # background (a tab in front would stop the others from drawing their screenshots).
            target = self.pipe.call("Target.createTarget", {"url": "about:blank", "background": True})["targetId"]
            self.worker_session = self.pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            self.pipe.call("ServiceWorker.enable", session=self.worker_session)
        deadline = time.monotonic() + timeout
        registration = None
        while registration is None:
            for event in self.pipe.events:
                if event.get("sessionId") == self.worker_session and event.get("method") == "ServiceWorker.workerRegistrationUpdated":
                    for entry in event["params"]["registrations"]:
                        if entry["scopeURL"].startswith(origin) and not entry.get("isDeleted"):
                            registration = entry["registrationId"]
            if registration is None:
                if time.monotonic() > deadline:
                    raise BrowserError(f"no service worker registered for {origin}")
                self.pipe.call("Browser.getVersion")  # lets events arrive
                time.sleep(0.05)
        started = time.monotonic()
        self.pipe.call("ServiceWorker.deliverPushMessage", {"origin": origin, "registrationId": registration, "data": data},
                       session=self.worker_session, timeout=timeout)
        return time.monotonic() - started


class Page:
    """One tab."""

    def __init__(self, browser, target, session):
        self.browser, self.target, self.session = browser, target, session

    def call(self, method, params=None, timeout=30):
        return self.browser.pipe.call(method, params, session=self.session, timeout=timeout)

    def navigate(self, url):
        self.call("Page.navigate", {"url": url})

    def reload(self):
        self.call("Page.reload", {"ignoreCache": False})

    def evaluate(self, expression, timeout=30):
        """The value of a JavaScript expression (a promise is awaited)."""
        reply = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                               "returnByValue": True, "userGesture": True}, timeout=timeout)
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            raise BrowserError("page script failed: " +
                               str(details.get("exception", {}).get("description") or details.get("text")))
        return reply.get("result", {}).get("value")

    def wait_for(self, expression, timeout=20, what=None):
        """Evaluates `expression` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
                if value:
                    return value
            except BrowserError as error:  # e.g. the page is navigating
                last_error = error
            time.sleep(0.05)
        detail = f" (last error: {last_error})" if last_error else ""
        raise BrowserError(f"timed out after {timeout:g} s waiting for {what or expression}{detail}\n" + self.notes())

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as file:
            file.write(base64.b64decode(data))

    def offline(self, offline):
        """Cuts (or restores) this tab's network, as a phone out of coverage."""
        self.call("Network.emulateNetworkConditions", {"offline": offline, "latency": 0,
                                                       "downloadThroughput": -1, "uploadThroughput": -1})

    def close(self):
        self.browser.pipe.call("Target.closeTarget", {"targetId": self.target})

    def notes(self):
        """What the page logged as errors and warnings, and uncaught exceptions."""
        lines = []
        for event in self.browser.pipe.events:
            if event.get("sessionId") not in (None, self.session):
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                lines.append("exception: " + str(details.get("exception", {}).get("description") or details.get("text")))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                lines.append(f"console.{params['type']}: {text}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
                entry = params["entry"]
                lines.append(f"log: {entry.get('text')} {entry.get('url', '')}".rstrip())
        return "\n".join(lines)


class _StaticHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript",
        ".html": "text/html", ".json": "application/json", ".webmanifest": "application/manifest+json",
    }

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format, *args):
        pass


class StaticServer:
    """Serves a folder on a free loopback port, for pages that need no relay."""

    def __init__(self, folder):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_StaticHandler, directory=folder))
        self.server.daemon_threads = True

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
