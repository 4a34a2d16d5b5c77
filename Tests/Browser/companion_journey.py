#!/usr/bin/env python3
"""The web companion's whole journey in headless Chromium, sized like a phone (390×844), against
a real `errand-relay` and a real `errand host` on loopback:

  the page opens at the link decoded (zbarimg) from the host's QR PNG; it pairs, and the page and
  the host show the same SAS (the test compares them and only then answers the host's prompt);
  the conversation held by the host (a task a command-line companion sent before) is synced;
  it sends text to the agent and runs an action with an argument and shows the streamed results;
  a long task shows live progress and is cancelled; a reload keeps keys, session and
  conversation; Chromium finds the app installable; a message sent while the phone is offline waits in the outbox and goes when it is
  back; with the relay down the app still opens (service worker) and queues, and after the relay
  restarts the queued message goes and the page keeps working; a second computer pairs beside the
  first; after `errand host revoke` it is told so
  and can forget everything; an expired, an altered and a reused code are refused with the
  reasons the command-line companion gives; a second tab is kept off the keys; forgetting
  everything leaves nothing.

Screenshots of pairing, the conversation and a running task go to --screenshots.
Usage: companion_journey.py [--bin .build/debug] [--screenshots DIR] [--keep]
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chromium import Browser, BrowserError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Page helpers, defined in every evaluation: controls found by their accessible names, the way a
# screen reader (or a person) finds them.
HELPERS = r"""
const visible = e => !!e && !e.closest('[hidden]') && e.getClientRects().length > 0;
const nameOf = e => (e.getAttribute('aria-label') ?? (e.labels && e.labels[0] ? e.labels[0].textContent : e.textContent)).trim();
const control = name => [...document.querySelectorAll('input, textarea, button, output')].find(e => visible(e) && nameOf(e) === name) ?? null;
const fill = (name, text) => { const e = control(name); if (!e) throw new Error('no control named ' + name); e.value = text; e.dispatchEvent(new Event('input', { bubbles: true })); return true; };
const press = name => { const e = control(name); if (!e) throw new Error('no button named ' + name); if (e.disabled) throw new Error(name + ' is disabled'); e.click(); return true; };
const problem = () => { const p = document.getElementById('problem'); return visible(p) ? p.querySelector('.message').textContent : null; };
const tasks = () => [...document.querySelectorAll('#tasks li.task')].map(li => ({ task: li.dataset.task, status: li.dataset.status,
  request: li.querySelector('.request')?.textContent ?? '', output: li.querySelector('.output')?.textContent ?? '' }));
const viewShown = id => visible(document.getElementById(id));
"""


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


class Journey:
    def __init__(self, args):
        self.bin = os.path.abspath(args.bin)
        self.errand = os.path.join(self.bin, "errand")
        self.relay_binary = os.path.join(self.bin, "errand-relay")
        for binary in (self.errand, self.relay_binary):
            if not os.access(binary, os.X_OK):
                raise Failure(f"{binary} is missing: run swift build first")
        self.work = tempfile.mkdtemp(prefix="errand-web-journey-")
        os.chmod(self.work, 0o700)
        self.screenshots = os.path.abspath(args.screenshots or os.path.join(self.work, "screenshots"))
        os.makedirs(self.screenshots, exist_ok=True)
        self.keep = args.keep
        self.processes = []
        self.relay = None
        self.host_run = None
        self.measured = {}

    # MARK: processes

    def say(self, text):
        print(f"web journey: {text}", flush=True)

    def run(self, *arguments, input=None, expect=0):
        result = subprocess.run([self.errand, *arguments], input=input, capture_output=True, text=True, timeout=60)
        if expect is not None and result.returncode != expect:
            raise Failure(f"errand {' '.join(arguments)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def start_relay(self, port=0):
        out = open(os.path.join(self.work, "relay.out"), "w+")
        log = open(os.path.join(self.work, "relay.log"), "a")
        # Doorbells may ring the stand-in push service on loopback (never allowed by default).
        push = {"ERRAND_RELAY_PUSH_ALLOWED_HOSTS": "127.0.0.1", "ERRAND_RELAY_PUSH_ALLOW_HTTP": "true",
                "ERRAND_RELAY_PUSH_MIN_INTERVAL_SECONDS": "1"}
        process = subprocess.Popen([self.relay_binary, "serve", "--listen", f"127.0.0.1:{port}",
                                    "--data", os.path.join(self.work, "relay"), "--open-registration"],
                                   stdout=out, stderr=log, env={**os.environ, **push})
        self.processes.append(process)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            out.seek(0)
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", out.read())
            if match:
                self.relay = process
                self.url = match.group(1)
                return
            if process.poll() is not None:
                break
            time.sleep(0.05)
        raise Failure("the relay did not start: " + open(os.path.join(self.work, "relay.log")).read()[-2000:])

    def stop(self, process):
        if process and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def start_host_run(self):
        log = open(os.path.join(self.work, "host-run.log"), "a")
        self.host_run = subprocess.Popen([self.errand, "host", "run", "--home", self.host], stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(self.host_run)
        self.wait_file(os.path.join(self.work, "host-run.log"), "waiting for tasks")

    def wait_file(self, path, text, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(path) and text in open(path).read():
                return
            time.sleep(0.05)
        raise Failure(f"'{text}' did not appear in {path}:\n" + (open(path).read()[-2000:] if os.path.exists(path) else ""))

    def host_pair(self, name, extra=()):
        """Starts `errand host pair`, waits for its QR PNG and returns (process, output lines, link)."""
        png = os.path.join(self.work, f"{name}.png")
        process = subprocess.Popen([self.errand, "host", "pair", "--home", self.host, "--png", png, "--terminal", "none", *extra],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.processes.append(process)
        lines = []
        threading.Thread(target=lambda: [lines.append(line.rstrip("\n")) for line in process.stdout], daemon=True).start()
        deadline = time.monotonic() + 20
        while not any("Waiting for a device" in line for line in lines):
            if time.monotonic() > deadline or process.poll() is not None:
                time.sleep(0.2)
                raise Failure("errand host pair did not show a code:\n" + "\n".join(lines))
            time.sleep(0.05)
        decoded = subprocess.run(["zbarimg", "--raw", "-q", png], capture_output=True, text=True, timeout=30)
        check(decoded.returncode == 0, f"zbarimg could not read {png}: {decoded.stderr}")
        link = decoded.stdout.strip()
        return process, lines, link

    def wait_line(self, lines, pattern, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in lines:
                match = re.search(pattern, line)
                if match:
                    return match
            time.sleep(0.05)
        raise Failure(f"no line matching {pattern!r}:\n" + "\n".join(lines))

    # MARK: page

    def js(self, expression, timeout=30):
        return self.page.evaluate(f"(async () => {{ {HELPERS} return ({expression}); }})()", timeout=timeout)

    def wait(self, expression, what, timeout=20):
        return self.page.wait_for(f"(async () => {{ {HELPERS} return ({expression}); }})()", timeout=timeout, what=what)

    def shot(self, name):
        path = os.path.join(self.screenshots, f"{name}.png")
        self.page.screenshot(path)
        self.say(f"screenshot {path}")

    def task_done(self, request_text, timeout=30):
        expression = f"tasks().find(t => t.request === {request_text!r} && ['succeeded','failed','cancelled','refused','timedOut'].includes(t.status))"
        return self.wait(expression, f"the task '{request_text}' to finish", timeout)

    def open_code(self, link):
        """Opens a code's link in the page. From the app's own page that is a change of fragment, not a
        load: wait for the page's hashchange handler to have taken it, or a check could read what the
        page still shows about the previous code."""
        same_document = self.js("location.href.split('#')[0]") == link.split("#")[0]
        if same_document:
            # Listeners run in the order they were added: this one runs after the app's.
            self.js("(window.__codeTaken = false, addEventListener('hashchange', () => { window.__codeTaken = true; }, { once: true }), true)")
        self.page.navigate(link)
        if same_document:
            self.wait("window.__codeTaken === true", "the page to take the new code")

    def cli_error(self, link):
        """What the command-line companion says about this code (its `errand: error:` line)."""
        result = self.run("pair", "--home", os.path.join(self.work, "cli-phone"), "--name", "cli", "--yes", "-",
                          input=link + "\n", expect=None)
        check(result.returncode != 0, f"the command-line companion accepted a code it should refuse: {result.stdout}")
        match = re.search(r"errand: error: (.*)", result.stderr)
        check(match, f"the command-line companion gave no error line: {result.stderr}")
        return match.group(1).strip()

    # MARK: the journey

    def main(self, browser):
        self.start_relay()
        self.say(f"relay at {self.url}")
        self.host = os.path.join(self.work, "host")
        self.run("host", "init", "--home", self.host, "--relay", self.url, "--name", "studio")
        shutil.copy(os.path.join(ROOT, "examples/agent.sh"), os.path.join(self.work, "agent.sh"))
        shutil.copy(os.path.join(ROOT, "examples/actions/disk-report"), os.path.join(self.host, "actions"))
        slow = os.path.join(self.host, "actions", "count-slowly")
        with open(slow, "w") as file:
            file.write("#!/bin/sh\n# description: Counts to a number, one a second\n"
                       "i=1; while [ $i -le ${1:-60} ]; do echo \"count $i\"; i=$((i+1)); sleep 1; done\n")
        os.chmod(slow, 0o755)
        config = os.path.join(self.host, "config.toml")
        text = open(config).read()
        check("command = []" in text, "the host's config.toml has no agent command line to set")
        open(config, "w").write(text.replace("command = []", f'command = ["{self.work}/agent.sh"]', 1))

        # Before the phone: a command-line companion pairs and runs a task, so the host has history.
        self.host_pair("cli-code", ["--yes"])
        self.run("pair", "--home", os.path.join(self.work, "cli"), "--name", "laptop-cli", "--yes", "--image",
                 os.path.join(self.work, "cli-code.png"))
        self.start_host_run()
        self.run("send", "--home", os.path.join(self.work, "cli"), "--wait", "From the command line")

        # 1. The QR code holds a link to the relay's /app/ with the offer in the fragment.
        pairing, host_lines, link = self.host_pair("code")
        check(link.startswith(f"{self.url}/app/#v=1&"), f"the QR code holds {link!r}, not a link to {self.url}/app/")
        self.first_link = link

        # 2. The page shows the host and asks for a device name; it pairs with the same SAS.
        self.page = browser.page(390, 844)
        opened = time.monotonic()
        self.page.navigate(link)
        self.wait("viewShown('pair-view') && !!control('Device name') && !!control('Pair')", "the pairing view")
        self.measured["link to pairing view"] = time.monotonic() - opened
        check(self.js("document.getElementById('pair-host').textContent") == "studio", "the page does not name the host 'studio'")
        check("#" not in self.js("location.href"), "the offer stays in the address bar after opening")
        fingerprint = self.js("document.getElementById('pair-fingerprint').textContent")
        check(re.fullmatch(r"[0-9a-f]{4}( [0-9a-f]{4}){3}", fingerprint or ""), f"fingerprint shown as {fingerprint!r}")
        self.shot("1-pair")
        self.js("fill('Device name', 'phone')")
        pressed = time.monotonic()
        self.js("press('Pair')")
        page_sas = self.wait("(() => { const o = document.getElementById('sas'); return visible(o) ? o.textContent : null; })()",
                             "the SAS on the page")
        self.measured["Pair pressed to SAS"] = time.monotonic() - pressed
        self.measured["link to SAS (with the name typed at once)"] = time.monotonic() - opened
        check(re.fullmatch(r"\d{3} \d{3}", page_sas), f"the page shows the SAS as {page_sas!r}, not ddd ddd")
        host_sas = self.wait_line(host_lines, r"^SAS: (\d{3} \d{3})$").group(1)
        check(page_sas == host_sas, f"the page shows SAS {page_sas}, the host {host_sas}")
        self.wait_line(host_lines, r"Device “phone” .* asks to pair")
        self.shot("2-sas")
        pairing.stdin.write("y\n")
        pairing.stdin.flush()
        check(pairing.wait(timeout=30) == 0, "errand host pair failed:\n" + "\n".join(host_lines))
        self.wait_line(host_lines, r"Paired with “phone”")
        self.wait("viewShown('conversation-view') && !!control('Message') && !!control('Send')", "the conversation view")
        self.say(f"paired: both sides show SAS {page_sas}")

        # The conversation's history came from the host: the other device's task is there.
        earlier = self.wait("tasks().find(t => t.request === 'From the command line' && t.status === 'succeeded')",
                            "the history synced from the host")
        check("task from laptop-cli" in earlier["output"], f"the synced task's output: {earlier}")
        check(self.js("[...document.querySelectorAll('#tasks .meta')].some(m => m.textContent.includes('from laptop-cli'))"),
              "the synced task does not say which device sent it")

        # 3. Text to the agent and an action with an argument; streamed results; the actions listed.
        self.wait("document.querySelector('#actions .action') !== null", "the host's actions")
        actions = self.js("[...document.querySelectorAll('#actions .action')].map(a => a.querySelector('strong').textContent + ': ' + (a.querySelector('.description')?.textContent ?? ''))")
        check("disk-report: How full the disks are (df -h), optionally for one path" in actions, f"actions shown: {actions}")
        self.js("fill('Message', 'Organize the meeting notes') && press('Send')")
        running = self.wait("tasks().find(t => t.request === 'Organize the meeting notes' && t.status === 'running' && t.output.includes('Agent:'))",
                            "the agent's progress to stream in")
        check("done." not in running["output"], "the task's output arrived only at the end, not streamed")
        finished = self.task_done("Organize the meeting notes")
        check(finished["status"] == "succeeded" and "Agent: done." in finished["output"] and "from phone" in finished["output"],
              f"the agent's task ended as {finished}")
        self.js("document.getElementById('actions-panel').open = true")
        self.js("fill('Arguments for disk-report', '/') && press('Run disk-report')")
        report = self.task_done("disk-report /")
        check(report["status"] == "succeeded" and "Filesystem" in report["output"], f"disk-report ended as {report}")
        self.js("document.getElementById('actions-panel').open = false")
        self.shot("3-conversation")

        # A long task: live progress, then cancelled from the phone.
        self.js("document.getElementById('actions-panel').open = true")
        self.js("fill('Arguments for count-slowly', '60') && press('Run count-slowly')")
        self.js("document.getElementById('actions-panel').open = false")
        self.wait("tasks().find(t => t.request === 'count-slowly 60' && t.status === 'running' && t.output.includes('count 2'))",
                  "the long task's progress")
        self.js("window.scrollTo(0, document.body.scrollHeight)")
        self.shot("4-running-task")
        self.js("(() => { const li = [...document.querySelectorAll('#tasks li.task')].find(l => l.querySelector('.request').textContent === 'count-slowly 60');"
                " [...li.querySelectorAll('button')].find(b => b.textContent === 'Cancel').click(); return true; })()")
        cancelled = self.task_done("count-slowly 60")
        check(cancelled["status"] == "cancelled", f"the cancelled task ended as {cancelled}")

        # Notifications: on from a tap; a finished task rings the phone, whose service worker
        # writes the words; the relay and the push service see none of them.
        self.notifications(browser)

        # Claude Code drives the tasks now: its steps stream, it asks before using a tool, and the
        # phone allows or denies — also from a notification while the app is closed.
        self.agent_approvals(browser)

        # 4. A reload keeps everything: the conversation is there and the session still works.
        before = self.js("tasks().length")
        self.page.reload()
        self.wait("viewShown('conversation-view')", "the conversation after a reload")
        check(self.js("tasks().length") == before, "the conversation lost tasks across a reload")
        self.js("fill('Message', 'After the reload') && press('Send')")
        check(self.task_done("After the reload")["status"] == "succeeded", "a task after the reload failed")

        # A second tab does not touch the keys: it says the app is open elsewhere.
        second = browser.page(390, 844)
        second.navigate(self.url + "/app/")
        second.wait_for("!document.getElementById('lock-view').hidden", what="the second tab's notice")
        check("another tab" in second.evaluate("document.getElementById('lock-view').textContent"), "the second tab's notice")
        second.close()

        # Installable: Chromium finds nothing missing (manifest, icons, service worker, scope).
        installability = self.page.call("Page.getInstallabilityErrors").get("installabilityErrors", [])
        check(installability == [], f"Chromium says the app cannot be installed: {installability}")
        manifest = self.page.call("Page.getAppManifest")
        check(not manifest.get("errors"), f"the manifest has errors: {manifest.get('errors')}")

        # Offline: the message waits in the outbox, the page says so, and it goes when back online.
        self.page.offline(True)
        self.js("window.dispatchEvent(new Event('offline')), true")
        self.js("fill('Message', 'Sent while offline') && press('Send')")
        waiting = self.wait("(() => { const o = document.getElementById('outbox').textContent; return o.includes('offline') ? o : null; })()",
                            "the outbox notice")
        check("1 message waiting" in waiting, f"the outbox says {waiting!r}")
        self.shot("5-offline")
        self.page.offline(False)
        self.js("window.dispatchEvent(new Event('online')), true")
        check(self.task_done("Sent while offline", timeout=60)["status"] == "succeeded", "the offline message did not go")

        # The relay goes down: the app still opens (its service worker's copy), keeps what is sent
        # in its outbox, and delivers it once the relay is back.
        port = self.url.rsplit(":", 1)[1]
        self.stop(self.relay)
        self.page.reload()
        self.wait("viewShown('conversation-view') && !!control('Send')", "the app opening while its server is down")
        check(self.js("!!navigator.serviceWorker.controller"), "the app opened without its service worker")
        self.js("fill('Message', 'After the relay restarted') && press('Send')")
        self.wait("document.getElementById('outbox').textContent.includes('1 message waiting')", "the outbox notice while the relay is down")
        self.start_relay(int(port))
        check(self.task_done("After the relay restarted", timeout=90)["status"] == "succeeded", "no result after the relay restarted")

        # A second computer: several hosts, each by name.
        self.pair_second_host(browser)

        # 5. Revoked on the host: the page says so and can forget everything.
        self.run("host", "revoke", "--home", self.host, "phone")
        self.js("fill('Message', 'After the revoke') && press('Send')")
        self.wait("viewShown('revoked') && document.getElementById('revoked').textContent.includes('revoked this device')",
                  "the revoked notice", timeout=30)
        check(self.js("control('Send') === null || control('Send').disabled"), "a revoked host still offers Send")
        time.sleep(1)
        check("After the revoke" not in open(os.path.join(self.work, "host-run.log")).read(),
              "the host ran a task from a revoked device")
        self.shot("6-revoked")
        self.js("press('Unpair and forget')")
        self.wait("viewShown('conversation-view')", "the remaining host after forgetting the revoked one")

        # 6. Codes that must be refused, with the command-line companion's reasons.
        self.refused_codes(browser)

        # Forget everything: every pairing, key and conversation goes; the welcome view is back.
        self.page.navigate(self.url + "/app/")
        self.wait("viewShown('conversation-view')", "the conversation before forgetting")
        self.js("(window.confirm = () => true, document.querySelector('details.settings').open = true, press('Forget everything on this device'))")
        self.wait("viewShown('welcome-view')", "the welcome view after forgetting everything")
        left = self.js("new Promise(r => { const q = indexedDB.open('errand'); q.onsuccess = () => { const db = q.result;"
                       " const tx = db.transaction(['hosts', 'sessions', 'tasks'], 'readonly'); const counts = [];"
                       " ['hosts', 'sessions', 'tasks'].forEach(n => { const c = tx.objectStore(n).count(); c.onsuccess = () => counts.push(c.result); });"
                       " tx.oncomplete = () => { db.close(); r(counts); }; }; q.onupgradeneeded = () => {}; })")
        check(left == [0, 0, 0], f"forgetting everything left records: {left}")

    def start_push_service(self):
        port_file = os.path.join(self.work, "push.port")
        process = subprocess.Popen([sys.executable, os.path.join(ROOT, "Tests/Push/push_service.py"), port_file],
                                   stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.work, "push.log"), "w"))
        self.processes.append(process)
        deadline = time.monotonic() + 20
        while not os.path.exists(port_file):
            if time.monotonic() > deadline or process.poll() is not None:
                raise Failure("the stand-in push service did not start: " + open(os.path.join(self.work, "push.log")).read()[-2000:])
            time.sleep(0.05)
        return "http://127.0.0.1:" + open(port_file).read().strip()

    def push_calls(self, service):
        with urllib.request.urlopen(service + "/calls", timeout=10) as response:
            return json.load(response)

    def notifications(self, browser):
        service = self.start_push_service()
        with urllib.request.urlopen(urllib.request.Request(service + "/subscribe?behavior=ok", method="POST"), timeout=10) as response:
            subscription = json.load(response)
        self.push_service, self.push_subscription = service, subscription
        # Headless Chromium has a push manager but no push service to subscribe with: the page gets
        # the stand-in's subscription instead (the browser's part: endpoint and keys).
        self.js("(() => { const s = " + json.dumps(subscription) + "; let current = null;"
                " const made = key => ({ endpoint: s.endpoint, options: { applicationServerKey: key }, unsubscribe: async () => { current = null; return true; },"
                "   toJSON: () => ({ endpoint: s.endpoint, expirationTime: null, keys: { p256dh: s.p256dh, auth: s.auth } }) });"
                " PushManager.prototype.getSubscription = async function () { return current; };"
                " PushManager.prototype.subscribe = async function (options) { current = made(options.applicationServerKey); return current; };"
                " return true; })()")
        browser.grant(self.url, ["notifications"])
        self.wait("!!control('Turn on notifications') && !!control('Not now')", "the offer to turn notifications on")
        self.js("press('Turn on notifications')")
        status = self.wait("(() => { const t = document.getElementById('notify-status').textContent; return t.includes('on for') ? t : null; })()",
                           "notifications on")
        check(status == "Notifications: on for studio.", f"the notification status says {status!r}")
        check(self.js("!control('Turn on notifications')"), "the offer stays after notifications were turned on")

        # A task finishes while the app is closed: the relay rings, the worker catches up.
        self.js("document.getElementById('actions-panel').open = true")
        self.js("fill('Arguments for count-slowly', '5') && press('Run count-slowly')")
        self.js("document.getElementById('actions-panel').open = false")
        task = self.wait("tasks().find(t => t.request === 'count-slowly 5' && t.status === 'running')", "the task to start")["task"]
        self.page.navigate("about:blank")
        deadline = time.monotonic() + 30
        while not (rings := [c for c in self.push_calls(service) if c["kind"] == "push" and c["name"] == subscription["name"]]):
            if time.monotonic() > deadline:
                with urllib.request.urlopen(self.url + "/metrics", timeout=10) as response:
                    metrics = [l for l in response.read().decode().splitlines() if "doorbell" in l or "live" in l]
                raise Failure("the relay did not ring the push service for the finished task:\n" + "\n".join(metrics))
            time.sleep(0.1)
        ring = rings[0]
        check(ring["status"] == 201 and ring.get("vapidProblem") is None, f"the ring: {ring}")
        check(ring.get("payload") == '{"errand":"doorbell","v":1}', f"the ring's payload: {ring.get('payload')!r}")
        # A page of the app's origin that does not run the app (it would take the keys' lock).
        self.page.navigate(self.url + "/app/manifest.webmanifest")
        self.wait("document.readyState === 'complete' && location.pathname.endsWith('manifest.webmanifest')", "a page of the app's origin")
        delivered = time.monotonic()
        browser.deliver_push(self.url, ring["payload"])
        notices = self.wait("navigator.serviceWorker.getRegistration('/app/').then(r => r && r.getNotifications())"
                            ".then(n => n && n.length ? n.map(x => ({ title: x.title, body: x.body, data: x.data, tag: x.tag })) : null)",
                            "the notification")
        self.measured["push to notification (the worker fetches, decrypts, writes)"] = time.monotonic() - delivered
        check(len(notices) == 1, f"notifications shown: {notices}")
        notice = notices[0]
        check(notice["title"] == "studio: count-slowly 5 — succeeded", f"the notification's title: {notice['title']!r}")
        check(notice["body"] == "count 5", f"the notification's body: {notice['body']!r}")
        check(notice["data"]["task"] == task, f"the notification names task {notice['data']}, not {task}")
        self.say(f"notification: {notice['title']} / {notice['body']}")
        # None of the task's words reached the relay (its database, its logs) or the push service.
        seen = json.dumps(self.push_calls(service)).encode()
        for root, _, names in os.walk(os.path.join(self.work, "relay")):
            for name in names:
                seen += open(os.path.join(root, name), "rb").read()
        for name in ("relay.log", "relay.out"):
            seen += open(os.path.join(self.work, name), "rb").read()
        for words in (b"count-slowly", b"count 5", b"succeeded"):
            check(words not in seen, f"{words!r} reached the relay or the push service")
        # Tapping it opens that task (the worker opens the app at ?host=…&task=…).
        self.js("navigator.serviceWorker.getRegistration('/app/').then(r => r.getNotifications()).then(n => n.forEach(x => x.close())).then(() => true)")
        self.page.navigate(self.url + f"/app/?host={notice['data']['host']}&task={task}")
        self.wait(f"document.querySelector('#tasks li.opened')?.dataset.task === {task!r}", "the tapped task, shown")
        check("?" not in self.js("location.href"), "the task link stays in the address bar")
        self.shot("4b-notification-opened")
        # With the app open and nothing new, a push still shows a notification, saying so.
        self.wait("document.getElementById('connection').textContent.startsWith('connected')", "the app connected again")
        browser.deliver_push(self.url, "")
        quiet = self.wait("navigator.serviceWorker.getRegistration('/app/').then(r => r.getNotifications())"
                          ".then(n => n.length ? n.map(x => x.body) : null)", "the 'nothing new' notification")
        check(quiet == ["Nothing new: this device is up to date."], f"the second notification: {quiet}")

    def set_adapter(self, adapter):
        """Restarts the host with agent.adapter = `adapter` (the stand-in Claude Code for claude-code)."""
        self.stop(self.host_run)
        config = os.path.join(self.host, "config.toml")
        text = re.sub(r'(?m)^adapter = .*$', f'adapter = "{adapter}"', open(config).read())
        if 'STANDIN_AGENT_STATE' not in text:
            text = text.replace('program = "claude"', f'program = "{ROOT}/Tests/Agents/claude"')
            text = text.replace("[agent.claude-code.environment]\n",
                                f'[agent.claude-code.environment]\nSTANDIN_AGENT_STATE = "{self.work}/agent-state"\n')
        open(config, "w").write(text)
        self.start_host_run()
        self.wait("document.getElementById('connection').textContent.startsWith('connected')", "the app connected again", timeout=30)

    def approval_card(self, marker):
        return self.wait("(() => { const a = [...document.querySelectorAll('#tasks .approval:not(.settled)')]"
                         f".find(a => a.textContent.includes({marker!r})); return a ? a.textContent : null; }})()",
                         f"the approval request for {marker}", timeout=30)

    def agent_approvals(self, browser):
        self.set_adapter("claude-code")
        work = os.path.join(self.work, "agent-work")
        os.makedirs(work, exist_ok=True)

        # Allowed from the phone: the tool runs; how long from the tap to the tool running.
        allowed = os.path.join(work, "allowed")
        self.js(f"fill('Message', {'run: touch ' + allowed!r}) && press('Send')")
        card = self.approval_card(allowed)
        check(f"The agent asks to use Bash: touch {allowed}" in card, f"the approval card says {card!r}")
        self.js("window.scrollTo(0, document.body.scrollHeight)")
        self.shot("4c-approval")
        tapped = time.monotonic()
        self.js("press('Allow')")
        while not os.path.exists(allowed):
            check(time.monotonic() - tapped < 30, "the allowed tool did not run")
            time.sleep(0.005)
        self.measured["approval tap to the tool running"] = time.monotonic() - tapped
        done = self.task_done("run: touch " + allowed)
        check(done["status"] == "succeeded" and "▸ Bash: touch" in done["output"] and "✓ done" in done["output"], f"the allowed task: {done}")
        self.wait("[...document.querySelectorAll('#tasks .approval.settled')].some(a => a.textContent.startsWith('Allowed by phone'))",
                  "the settled approval")

        # Denied with a reason: the tool does not run, the agent is told why.
        denied = os.path.join(work, "denied")
        self.js(f"fill('Message', {'run: touch ' + denied!r}) && press('Send')")
        self.approval_card(denied)
        self.js("fill('Why not (optional, for the agent)', 'not today') && press('Deny')")
        done = self.task_done("run: touch " + denied)
        check("✗ denied from phone: not today" in done["output"], f"the denied task: {done}")
        check(not os.path.exists(denied), "a denied tool ran")

        # The app closed: the request rings the phone, the notification says an answer is needed,
        # and opening it lets the person allow.
        gate, later = os.path.join(work, "gate"), os.path.join(work, "later")
        rang = len([c for c in self.push_calls(self.push_service) if c["kind"] == "push"])
        self.js(f"fill('Message', {'wait-for: ' + gate + chr(10) + 'run: touch ' + later!r}) && press('Send')")
        task = self.wait("tasks().find(t => t.request.startsWith('wait-for:') && t.status === 'running')", "the gated task to start")["task"]
        # Closed for good: the page has let go of the keys (a page being put away may still hold
        # them a moment, and would be asked to catch up itself).
        self.page.navigate(self.url + "/app/manifest.webmanifest")
        self.wait("navigator.locks.query().then(q => !q.held.some(l => l.name === 'errand-companion'))", "the closed app to let go of its lock")
        self.js("navigator.serviceWorker.getRegistration('/app/').then(r => r.getNotifications()).then(n => n.forEach(x => x.close())).then(() => true)")
        open(gate, "w").close()
        deadline = time.monotonic() + 30
        while len([c for c in self.push_calls(self.push_service) if c["kind"] == "push"]) <= rang:
            check(time.monotonic() < deadline, "the relay did not ring for the approval request")
            time.sleep(0.1)
        browser.deliver_push(self.url, '{"errand":"doorbell","v":1}')
        notices = self.wait("navigator.serviceWorker.getRegistration('/app/').then(r => r && r.getNotifications())"
                            ".then(n => n && n.length ? n.map(x => ({ title: x.title, body: x.body, data: x.data, tag: x.tag })) : null)",
                            "the approval notification")
        asking = [n for n in notices if n["title"] == "studio needs an answer"]
        check(len(asking) == 1 and f"Bash: touch {later}" in asking[0]["body"], f"notifications shown: {notices}")
        check(asking[0]["data"]["task"] == task, f"the notification names {asking[0]['data']}, not task {task}")
        self.say(f"notification: {asking[0]['title']} / {asking[0]['body']}")
        self.js("navigator.serviceWorker.getRegistration('/app/').then(r => r.getNotifications()).then(n => n.forEach(x => x.close())).then(() => true)")
        self.page.navigate(self.url + f"/app/?host={asking[0]['data']['host']}&task={task}")
        self.approval_card(later)
        self.js("press('Allow')")
        check(self.task_done("wait-for: " + gate + "\nrun: touch " + later)["status"] == "succeeded", "the task allowed from the notification")
        check(os.path.exists(later), "the tool allowed from the notification did not run")

        # A new conversation: the agent remembers nothing, and the conversation shows where it began.
        self.js("document.getElementById('new-conversation').click(), fill('Message', 'Start afresh') && press('Send')")
        fresh = self.task_done("Start afresh")
        check("holds 0 earlier prompts" in fresh["output"], f"the new conversation's first task: {fresh}")
        check(self.js("[...document.querySelectorAll('#tasks .divider')].length") == 1, "no divider where the new conversation began")
        check(self.js("document.getElementById('new-conversation').checked") is False, "the new-conversation box stays ticked")
        self.js("fill('Message', 'And then') && press('Send')")
        check("holds 1 earlier prompt; the last was: Start afresh." in self.task_done("And then")["output"], "the next task did not continue it")
        self.set_adapter("command")

    def pair_second_host(self, browser):
        second = os.path.join(self.work, "host2")
        self.run("host", "init", "--home", second, "--relay", self.url, "--name", "laptop")
        process = subprocess.Popen([self.errand, "host", "pair", "--home", second, "--png", os.path.join(self.work, "code2.png"),
                                    "--terminal", "none", "--yes"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.processes.append(process)
        png = os.path.join(self.work, "code2.png")
        deadline = time.monotonic() + 20
        while not os.path.exists(png) and time.monotonic() < deadline:
            time.sleep(0.05)
        link = subprocess.run(["zbarimg", "--raw", "-q", png], capture_output=True, text=True, timeout=30).stdout.strip()
        self.open_code(link)
        self.wait("viewShown('pair-view') && document.getElementById('pair-host').textContent === 'laptop'", "the second host's pairing view")
        check(self.js("control('Device name').value") == "phone", "the device name is not remembered for the second pairing")
        self.js("press('Pair')")
        check(process.wait(timeout=30) == 0, "pairing the second host failed")
        tabs = self.wait("(() => { const t = [...document.querySelectorAll('#host-tabs button')].map(b => b.textContent); return t.length === 2 ? t : null; })()",
                         "a tab for each host")
        check(sorted(tabs) == ["laptop", "studio"], f"host tabs {tabs}")
        self.wait("['Notifications: on for studio, laptop.', 'Notifications: on for laptop, studio.']"
                  ".includes(document.getElementById('notify-status').textContent)", "notifications for the second computer too")
        self.js("[...document.querySelectorAll('#host-tabs button')].find(b => b.textContent === 'studio').click(), true")
        self.wait("document.querySelector('#host-tabs [aria-current=true]')?.textContent === 'studio' && tasks().length > 0", "the studio conversation")

    def refused_codes(self, browser):
        page = self.page
        # Reused: the first code, already used to pair.
        cli = self.cli_error(self.first_link)
        self.open_code(self.first_link)
        self.wait("viewShown('pair-view')", "the pairing view for the used code")
        self.js("fill('Device name', 'phone again') && press('Pair')")
        shown = self.wait("problem()", "the refusal of the used code")
        check(shown == cli, f"a used code: the page says {shown!r}, the command line {cli!r}")
        self.say(f"used code refused: {shown}")

        # Expired: a code valid for one second, opened after it ran out.
        process, _, link = self.host_pair("expired", ["--timeout", "1"])
        time.sleep(2.2)
        cli = self.cli_error(link)
        self.open_code(link)
        shown = self.wait("problem()", "the refusal of the expired code")
        check(re.sub(r"\d+ seconds?", "N seconds", shown) == re.sub(r"\d+ seconds?", "N seconds", cli),
              f"an expired code: the page says {shown!r}, the command line {cli!r}")
        check("expired" in shown, f"the expired code's message: {shown!r}")
        self.stop(process)
        self.say(f"expired code refused: {shown}")

        # Altered: the host's key-agreement key swapped by whoever passed the code on.
        process, lines, link = self.host_pair("altered", ["--yes"])
        swapped = re.sub(r"x=[A-Za-z0-9_-]{43}", "x=NYBy1jZYgNGu6jKa35EhODhR7SGijjt16WXQ0s0WYlQ", link)
        check(swapped != link, "could not alter the code")
        self.open_code(swapped)
        self.wait("viewShown('pair-view')", "the pairing view for the altered code")
        self.js("fill('Device name', 'phone altered') && press('Pair')")
        shown = self.wait("problem()", "the refusal of the altered code", timeout=30)
        check("closed the pairing code" in shown, f"an altered code: the page says {shown!r}")
        process.wait(timeout=30)
        check(any("not sealed to this computer" in line for line in lines), "the host did not refuse the altered code:\n" + "\n".join(lines))
        devices = self.run("host", "devices", "--home", self.host, "--json").stdout
        check("phone altered" not in devices and "phone again" not in devices, "a refused code registered a device")
        self.say(f"altered code refused: {shown}")
        self.shot("7-refused")

    def cleanup(self):
        for process in self.processes:
            self.stop(process)
        if not self.keep:
            shutil.rmtree(self.work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build/debug"))
    parser.add_argument("--screenshots", help="where to write the phone-size screenshots (default: inside the work folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, state) afterwards")
    args = parser.parse_args()
    journey = None
    try:
        journey = Journey(args)
        with Browser() as browser:
            try:
                journey.main(browser)
            except (Failure, BrowserError, TimeoutError, subprocess.TimeoutExpired) as error:
                if getattr(journey, "page", None):
                    try:
                        journey.shot("failure")
                        print(journey.page.notes(), file=sys.stderr)
                    except Exception:
                        pass
                print(f"web journey: FAILED: {error}", file=sys.stderr)
                print("web journey: at " + " < ".join(f"{frame.name}:{frame.lineno}" for frame in reversed(traceback.extract_tb(error.__traceback__))),
                      file=sys.stderr)
                print(f"web journey: logs in {journey.work}", file=sys.stderr)
                journey.keep = True
                sys.exit(1)
        for name, seconds in journey.measured.items():
            journey.say(f"measured: {name}: {seconds * 1000:.0f} ms")
        journey.say("passed")
    except Failure as error:
        print(f"web journey: error: {error}", file=sys.stderr)
        sys.exit(2)
    finally:
        if journey:
            journey.cleanup()


if __name__ == "__main__":
    main()
