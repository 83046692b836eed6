"""Drive real headless Chromium through the DevTools protocol over a pipe (no extra package, no open port).

`inspect_page(path)` loads a local HTML file and returns what a reader's browser saw: console errors, exceptions,
failed or network requests, each <img>'s natural size, and optionally a PNG screenshot or the value of an expression.
With --remote-debugging-pipe Chromium reads JSON commands from fd 3 and writes replies to fd 4, NUL-separated.
"""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--remote-debugging-pipe",
         "--window-size=1280,900"]


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


class Browser:
    """One Chromium process; `send` a command to a session and wait for its reply, collecting events meanwhile."""

    def __init__(self, binary: str, profile: str):
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # move both child ends to high numbers first, so dup2 onto 3 and 4 cannot clobber one another
        high_r, high_w = os.dup2(to_child_r, 100), os.dup2(from_child_w, 101)

        def wire_fds():
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}"], preexec_fn=wire_fds,
                                        close_fds=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        for fd in (to_child_r, from_child_w, high_r, high_w):
            os.close(fd)
        self._buffer, self._next_id, self.events = b"", 0, []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no reply from Chromium")
            chunk = os.read(self._from_child, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        self._next_id += 1
        command = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            command["sessionId"] = session
        os.write(self._to_child, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            message = self._read_message(deadline)
            self.events.append(message)
            if message.get("method") == method:
                return message

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_child)
        os.close(self._from_child)


IMAGES_JS = "Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth}))"


def inspect_page(path: Path, screenshot: Path | None = None, expression: str | None = None) -> dict:
    """Load `path` in headless Chromium; report console errors, exceptions, requests, images (and a screenshot, and
    the value of a JavaScript `expression` evaluated on the loaded page)."""
    binary = chromium_binary()
    with tempfile.TemporaryDirectory(prefix="amal-chromium-") as profile:
        browser = Browser(binary, profile)
        try:
            target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                browser.send(f"{domain}.enable", session=session)
            browser.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
            browser.wait_for("Page.loadEventFired")
            images = browser.send("Runtime.evaluate", {"expression": IMAGES_JS, "returnByValue": True},
                                  session=session)["result"]["value"]
            value = None if expression is None else browser.send(
                "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)["result"]
            if screenshot is not None:
                browser.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900,
                                                                    "deviceScaleFactor": 1, "mobile": False},
                             session=session)
                shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                                    session=session)
                screenshot.write_bytes(base64.b64decode(shot["data"]))
        finally:
            browser.close()
    events = browser.events
    return {
        "console_errors": [e["params"]["args"] for e in events if e.get("method") == "Runtime.consoleAPICalled"
                           and e["params"]["type"] in ("error", "assert")],
        "exceptions": [e["params"]["exceptionDetails"] for e in events if e.get("method") == "Runtime.exceptionThrown"],
        "log_errors": [e["params"]["entry"] for e in events if e.get("method") == "Log.entryAdded"
                       and e["params"]["entry"]["level"] == "error"],
        "failed_requests": [e["params"] for e in events if e.get("method") == "Network.loadingFailed"],
        "requests": [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"],
        "images": images,
        "value": None if value is None else value.get("value"),
    }
