#!/usr/bin/env python3
"""The web companion's cryptography in headless Chromium, against published test vectors:
web/test/sodium-vectors.html (libsodium compiled to WebAssembly) and
web/test/protocol-vectors.html (the protocol's vectors from docs/protocol.md, byte for byte).

Exits 0 when every vector passes, 1 when one fails (each failure printed), 2 when it could not run.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chromium import Browser, BrowserError, StaticServer  # noqa: E402

WEB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "web")
PAGES = [("test/sodium-vectors.html", "window.sodiumVectors"), ("test/protocol-vectors.html", "window.protocolVectors"),
         ("test/companion-checks.html", "window.companionChecks")]


def main():
    failures = 0
    try:
        with StaticServer(WEB) as server, Browser() as browser:
            for path, promise in PAGES:
                page = browser.page()
                started = time.monotonic()
                page.navigate(f"{server.url}/{path}")
                page.wait_for(f"{promise} !== undefined", timeout=30, what=f"{path} to start")
                result = json.loads(page.evaluate(f"{promise}.then(r => JSON.stringify(r))", timeout=60))
                took = time.monotonic() - started
                for failure in result["failed"]:
                    print(f"browser vectors: FAILED {path}: {failure['name']}: {failure['detail']}", file=sys.stderr)
                if result["failed"] or result["passed"] == 0:
                    failures += 1
                    notes = page.notes()
                    if notes:
                        print(notes, file=sys.stderr)
                print(f"browser vectors: {path}: {result['passed']} passed, {len(result['failed'])} failed ({took:.1f} s)")
                page.close()
    except (BrowserError, OSError, EOFError, TimeoutError) as error:
        print(f"browser vectors: error: {error}", file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
