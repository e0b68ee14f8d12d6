"""The web dashboard: driven in a real headless Chromium (log in, see the programs, restart one
and watch its pid change without a reload, tail a log as it grows, a program printing
<script> shown as text, log out), and its safety over plain HTTP (401 without a credential,
403 for forged cross-origin or token-less posts with nothing done, 405 for GET on an action,
throttled logins, read-only users, foreign Host headers).

Set TWINVISOR_SCREENSHOTS=DIR to keep screenshots of the pages (docs/ has them)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.support.helpers import Daemon, child, daemon_fixture, free_port, wait_until  # noqa: F401

PASSWORD = "correct horse battery"
TICKER = ["sh", "-c", "while :; do echo tick $$ $(date +%s%N); sleep 0.2; done"]
XSS = ["sh", "-c", "echo '<script>alert(1)</script><b>bold</b>'; exec sleep 3600"]


class Site:
    def __init__(self, daemon: Daemon, port: int) -> None:
        self.daemon, self.port = daemon, port
        self.base = f"http://127.0.0.1:{port}"

    def request(
        self,
        method: str,
        path: str,
        *,
        cookie: str | None = None,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> tuple[int, dict[str, str], str]:
        req = urllib.request.Request(self.base + path, method=method, data=data)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        if cookie:
            req.add_header("Cookie", f"twinvisor_session={cookie}")
        opener = urllib.request.build_opener(_NoRedirect())
        try:
            with opener.open(req, timeout=30) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()

    def login(self, user: str = "ann", password: str = PASSWORD) -> tuple[int, str | None]:
        body = f"user={user}&password={password}".encode()
        status, headers, _ = self.request(
            "POST",
            "/login",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        m = re.search(r"twinvisor_session=([^;]+)", headers.get("set-cookie", ""))
        return status, m.group(1) if m else None

    def csrf(self, cookie: str) -> str:
        status, _, page = self.request("GET", "/", cookie=cookie)
        assert status == 200, page
        m = re.search(r'name="csrf-token" content="([^"]+)"', page)
        assert m, page
        return m.group(1)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kw: Any) -> None:
        return None


def start_site(daemon: Daemon, programs: dict[str, dict[str, Any]]) -> Site:
    port = free_port()
    extra = f'[daemon.http]\nlisten = ":{port}"\ndashboard = true\n'
    daemon.write_config(programs, daemon_extra=extra)
    for user, role in (("ann", "admin"), ("rob", "read")):
        p = subprocess.run(
            [*daemon.cli_argv(), "passwd", user, "--role", role],
            input=PASSWORD + "\n",
            env=daemon.env,
            capture_output=True,
            text=True,
        )
        assert p.returncode == 0, p
    assert os.stat(daemon.path("dashboard.users")).st_mode & 0o777 == 0o600
    r = daemon.cli("up")
    assert r.rc == 0, r
    for name in programs:
        daemon.wait_state(name, "RUNNING")
    return Site(daemon, port)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "chromium and chromium-driver are not installed (.ci/run does it)"
    profile = tempfile.mkdtemp(prefix="tvchrome", dir="/tmp")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    drv = webdriver.Chrome(options=options, service=Service(driver))
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def shot(drv: WebDriver, name: str) -> None:
    where = os.environ.get("TWINVISOR_SCREENSHOTS")
    if where:
        drv.save_screenshot(os.path.join(where, f"dashboard-{name}.png"))


def text_of(drv: WebDriver, css: str) -> str:
    return str(drv.execute_script(f"return document.querySelector({css!r})?.textContent ?? ''"))


def test_dashboard_in_a_real_browser(daemon: Daemon, browser: WebDriver) -> None:
    site = start_site(
        daemon,
        {"web": {"command": child("run")}, "ticker": {"command": TICKER}, "xss": {"command": XSS}},
    )
    drv = browser
    drv.get(site.base + "/")
    shot(drv, "login")
    drv.find_element(By.NAME, "user").send_keys("ann")
    drv.find_element(By.NAME, "password").send_keys(PASSWORD)
    drv.find_element(By.ID, "login").click()
    wait_until(lambda: text_of(drv, 'tr[data-name="web"] .state') == "RUNNING", 20, "the table")
    assert "ann (admin)" in text_of(drv, "#who")
    drv.execute_script("window.__sameDocument = 1")
    old = text_of(drv, 'tr[data-name="web"] .pid')
    assert old == str(daemon.pid("web"))
    # found and clicked in one script: the table is redrawn on every event, so an element found
    # by one WebDriver call can be replaced before the next ("stale element reference")
    restart = 'button[data-verb="restart"][data-name="web"]'
    drv.execute_script(f"document.querySelector({restart!r}).click()")

    def new_pid() -> str | None:
        pid = text_of(drv, 'tr[data-name="web"] .pid')
        running = text_of(drv, 'tr[data-name="web"] .state') == "RUNNING"
        return pid if running and pid not in (old, "-", "") else None

    pid = wait_until(new_pid, 20, "the new pid drawn live")
    assert pid == str(daemon.pid("web"))
    assert drv.execute_script("return window.__sameDocument") == 1, "the page was reloaded"
    shot(drv, "programs")
    select = "document.getElementById('log-name')"
    drv.execute_script(f"{select}.value = 'ticker'; {select}.dispatchEvent(new Event('change'))")
    first = wait_until(lambda: text_of(drv, "#log").count("tick") or None, 20, "the log tail")
    wait_until(lambda: text_of(drv, "#log").count("tick") > first, 20, "a new line appears")
    drv.execute_script(f"{select}.value = 'xss'")
    wait_until(lambda: "<script>alert(1)</script>" in text_of(drv, "#log"), 20, "xss as text")
    with pytest.raises(NoAlertPresentException):
        _ = drv.switch_to.alert.text
    assert not drv.find_elements(By.CSS_SELECTOR, "#log script, #log b")
    shot(drv, "log")
    drv.set_window_size(360, 800)
    wait_until(lambda: drv.execute_script("return innerWidth") <= 400, 10, "a narrow window")
    assert drv.execute_script("return document.documentElement.scrollWidth <= innerWidth + 1")
    shot(drv, "360px")
    drv.set_window_size(1280, 900)
    cookie = drv.get_cookie("twinvisor_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    drv.find_element(By.ID, "logout").click()
    wait_until(lambda: drv.find_elements(By.NAME, "password"), 20, "the login page again")
    assert site.request("GET", "/ui/status", cookie=cookie["value"])[0] == 401


def test_dashboard_refuses_what_it_must(daemon: Daemon) -> None:
    site = start_site(daemon, {"web": {"command": child("run")}})
    pid = daemon.pid("web")
    # no credentials: 401 everywhere but /health
    for method, path in (
        ("GET", "/"),
        ("GET", "/static/dashboard.js"),
        ("GET", "/ui/status"),
        ("GET", "/ui/events"),
        ("GET", "/ui/logs/web"),
        ("POST", "/ui/programs/web/restart"),
        ("POST", "/ui/programs/web/signal"),
        ("POST", "/logout"),
    ):
        assert site.request(method, path)[0] == 401, (method, path)
    assert site.request("GET", "/health")[0] == 200
    status, cookie = site.login()
    assert status == 303 and cookie
    token = site.csrf(cookie)
    status, headers, _ = site.request("GET", "/", cookie=cookie)
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert headers["x-frame-options"] == "DENY"
    restart = "/ui/programs/web/restart"
    origin = f"http://127.0.0.1:{site.port}"
    forged = (
        {"Origin": origin},  # no token
        {"Origin": origin, "X-CSRF-Token": "wrong"},
        {"Origin": "http://evil.example", "X-CSRF-Token": token},
        {"Origin": origin, "X-CSRF-Token": token, "Host": "evil.example"},
    )
    for headers_sent in forged:
        assert site.request("POST", restart, cookie=cookie, headers=headers_sent)[0] == 403
    assert site.request("GET", restart, cookie=cookie)[0] == 405
    assert daemon.pid("web") == pid, "a refused request did something"
    _, read_cookie = site.login("rob")
    read_token = site.csrf(str(read_cookie))
    ok_headers = {"Origin": origin, "X-CSRF-Token": read_token}
    assert site.request("POST", restart, cookie=read_cookie, headers=ok_headers)[0] == 403
    assert site.request("GET", "/ui/status", cookie=read_cookie)[0] == 200
    good = {"Origin": origin, "X-CSRF-Token": token}
    assert site.request("POST", restart, cookie=cookie, headers=good)[0] == 200
    assert daemon.pid("web") != pid
    codes = [site.login("ann", "wrong password")[0] for _ in range(20)]
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}, codes
    assert site.login("ann")[0] == 429, "throttled even with the right password"
    os.unlink(daemon.path("dashboard.users"))  # nobody can log in: the page says what to do
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, page = site.request("POST", "/login", data=b"user=x&password=y", headers=form)
    assert status == 503 and "twinvisor passwd NAME" in page


def test_tls_listener_sets_secure_cookies(daemon: Daemon) -> None:
    import http.client
    import ssl

    cert, key = daemon.path("cert.pem"), daemon.path("key.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            key,
            "-out",
            cert,
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    extra = (
        f'[daemon.http]\nlisten = ":{port}"\ndashboard = true\n'
        f'tls_cert = "{cert}"\ntls_key = "{key}"\n'
    )
    daemon.write_config({"web": {"command": child("run")}}, daemon_extra=extra)
    p = subprocess.run(
        [*daemon.cli_argv(), "passwd", "ann"], input=PASSWORD + "\n", env=daemon.env, text=True
    )
    assert p.returncode == 0
    assert daemon.cli("up").rc == 0
    ctx = ssl.create_default_context(cafile=cert)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    body = f"user=ann&password={PASSWORD}"
    conn.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
    r = conn.getresponse()
    r.read()
    assert r.status == 303
    assert "; Secure" in r.getheader("set-cookie", "")
    conn.close()


def test_unloadable_tls_files_are_reported_by_up(daemon: Daemon) -> None:
    cert, key = daemon.path("cert.pem"), daemon.path("key.pem")
    for path in (cert, key):
        with open(path, "w") as f:
            f.write("not a PEM file\n")
    extra = f'[daemon.http]\nlisten = ":{free_port()}"\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
    daemon.write_config({"web": {"command": child("run")}}, daemon_extra=extra)
    r = daemon.cli("up")
    assert r.rc != 0, r
    assert f"cannot load tls_cert {cert} and tls_key {key}" in r.err, r
