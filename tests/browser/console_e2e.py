#!/usr/bin/env python3
"""The owner's console in headless Chromium, end to end.

Run by tests/it/console.rs (`the_console_in_a_real_browser`), which starts the daemon with
its console against the fake Google and passes, in the environment:

  CONSOLE_URL    the console's origin
  SCIM_URL       the SCIM base URL
  RETRAC_BIN     the retrac-sync binary (the CLI, through the daemon's admin socket)
  RETRAC_CONFIG  its config file
  OWNER_EMAIL    an active owner; the fake Google signs them in
  STAFF_EMAIL    an active member who is not an owner
  AXE_JS         axe-core's axe.min.js
  SCREENSHOTS    a directory for a PNG of each page (empty: none are written)

Each step prints "ok - ..." or stops with the reason. Uses Debian's chromium and
chromium-driver, and Selenium from PyPI.
"""

import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

CONSOLE = os.environ["CONSOLE_URL"]
SCIM = os.environ["SCIM_URL"]
BIN = os.environ["RETRAC_BIN"]
CONFIG = os.environ["RETRAC_CONFIG"]
OWNER = os.environ["OWNER_EMAIL"]
STAFF = os.environ["STAFF_EMAIL"]
AXE = open(os.environ["AXE_JS"], encoding="utf-8").read()
SHOTS = os.environ.get("SCREENSHOTS", "")

passed = 0


def ok(what):
    global passed
    passed += 1
    print(f"ok - {what}", flush=True)


def fail(what):
    print(f"not ok - {what}", flush=True)
    print(f"{passed} passed, 1 failed", flush=True)
    sys.exit(1)


def check(cond, what):
    if not cond:
        fail(what)


def cli(*args):
    out = subprocess.run([BIN, "--config", CONFIG, *args], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        fail(f"retrac-sync {' '.join(args)}: exit {out.returncode}: {out.stderr}")
    return out.stdout


def scim_status(token):
    req = urllib.request.Request(f"{SCIM}/Users?count=1", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def browser(javascript=True):
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
              "--disable-gpu", "--lang=en-US"):
        opts.add_argument(a)
    if not javascript:
        opts.add_argument("--blink-settings=scriptEnabled=false")
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    d.set_page_load_timeout(30)
    return d


def wait(d, cond, what, timeout=20):
    try:
        return WebDriverWait(d, timeout).until(cond)
    except Exception:
        fail(f"{what} (at {d.current_url}: {d.find_element(By.TAG_NAME, 'body').text[:500]!r})")


def heading(d):
    return d.find_element(By.TAG_NAME, "h1").text


def button(d, name):
    """The one button whose accessible name (its text) is exactly `name`."""
    found = [b for b in d.find_elements(By.TAG_NAME, "button") if b.text.strip() == name]
    check(found, f"a button named {name!r} on {d.current_url}")
    return found[0]


def field(d, label):
    """The field whose <label> reads exactly `label`."""
    labels = [l for l in d.find_elements(By.TAG_NAME, "label") if l.text.strip() == label]
    check(labels, f"a field labelled {label!r} on {d.current_url}")
    return d.find_element(By.ID, labels[0].get_attribute("for"))


def axe(d, page):
    """axe-core on the page: no serious or critical violation."""
    d.execute_script(AXE)
    result = d.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length}))))"
        ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: 0}]));"
    )
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    check(not bad, f"axe-core finds no serious or critical violation on {page}: {json.dumps(bad)}")
    ok(f"axe-core: {page}: no serious or critical violation ({len(result)} minor)")


def shot(d, name):
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        d.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def no_alert(d, what):
    try:
        d.switch_to.alert
        fail(f"{what}: a script ran (an alert is open)")
    except NoAlertPresentException:
        pass


def sign_in_with_link(d):
    link = cli("console", "login", OWNER).splitlines()[0]
    check(link.startswith(f"{CONSOLE}/login/link/"), f"console login prints a link: {link}")
    d.get(link)
    button(d, "Sign in").click()
    wait(d, EC.url_to_be(f"{CONSOLE}/members"), "the link signs in and lands on Members")


def main():
    d = browser()
    try:
        # The sign-in page, before any session.
        d.get(f"{CONSOLE}/members")
        wait(d, EC.url_to_be(f"{CONSOLE}/login"), "Members without a session goes to the sign-in page")
        axe(d, "Sign in")
        shot(d, "sign-in")

        # 1. A one-time link from the CLI.
        sign_in_with_link(d)
        check(heading(d) == "Members", "the Members page")
        check(OWNER in d.find_element(By.TAG_NAME, "header").text, "the header names the owner")
        nav = [a.text for a in d.find_elements(By.CSS_SELECTOR, "nav[aria-label=Settings] a")]
        check(nav == ["Members", "Security", "Sync", "Audit"], f"the navigation: {nav}")
        ok("signed in with a one-time link")
        axe(d, "Members")
        shot(d, "members")

        # 2. A member named <img src=x onerror=alert(1)> is text.
        field(d, "Search").send_keys("onerror")
        button(d, "Show").click()
        wait(d, EC.presence_of_element_located((By.LINK_TEXT, "markup@example.com")), "the search finds the member")
        check("<img src=x onerror=alert(1)>" in d.find_element(By.TAG_NAME, "table").text, "the name is shown as text")
        check(not d.find_elements(By.CSS_SELECTOR, "main img"), "no img element was made")
        no_alert(d, "the markup name")
        d.find_element(By.LINK_TEXT, "markup@example.com").click()
        wait(d, EC.title_contains("markup@example.com"), "the member's page")
        check("<img src=x onerror=alert(1)>" in d.find_element(By.TAG_NAME, "main").text, "the name is text on its page")
        no_alert(d, "the markup name's page")
        ok("a member named <img src=x onerror=alert(1)> is displayed as text")

        # 3. Locations, saved in the browser, read back with the CLI.
        d.get(f"{CONSOLE}/members")
        Select(field(d, "Status")).select_by_visible_text("Active")
        field(d, "Search").send_keys(STAFF.split("@")[0])
        button(d, "Show").click()
        wait(d, EC.presence_of_element_located((By.LINK_TEXT, STAFF)), "the staff member is listed")
        d.find_element(By.LINK_TEXT, STAFF).click()
        wait(d, EC.title_contains(STAFF), "the staff member's page")
        axe(d, "a member's page")
        loc = field(d, "Locations")
        loc.clear()
        loc.send_keys("Paris, Lyon")
        button(d, "Save locations").click()
        wait(d, EC.text_to_be_present_in_element((By.CSS_SELECTOR, "[role=status]"), "Locations saved."), "the save is confirmed")
        shown = json.loads(cli("--output", "json", "members", "show", STAFF))
        check(shown["locations"] == ["Paris", "Lyon"], f"the CLI reads the locations back: {shown['locations']}")
        check(Select(field(d, "Role")).first_selected_option.text == "member", "the Role select shows member")
        shot(d, "member")
        ok("locations set in the browser are read back by the CLI")

        # 4. A token, shown once; SCIM takes it; revoked, SCIM refuses it.
        d.find_element(By.LINK_TEXT, "Security").click()
        wait(d, EC.title_contains("Security"), "the Security page")
        check(d.find_element(By.ID, "scim-url").get_attribute("value") == SCIM, "the SCIM endpoint URL")
        axe(d, "Security")
        field(d, "Label").send_keys("okta-e2e")
        button(d, "Generate token").click()
        wait(d, EC.presence_of_element_located((By.ID, "token")), "the new token is shown")
        token = d.find_element(By.ID, "token").get_attribute("value")
        check(token.startswith("rtsc_"), "the token has its prefix")
        check("revoke the old one" in d.page_source, "the rotation advice")
        check(scim_status(token) == 200, "SCIM accepts the new token")
        tid = d.current_url.rsplit("/", 1)[1]
        axe(d, "a new token")
        # The screenshot shows a stand-in, never the secret.
        d.execute_script("document.getElementById('token').value = 'rtsc_' + 'x'.repeat(16) + '_' + '(shown once)';")
        shot(d, "security-new-token")
        d.refresh()
        wait(d, EC.text_to_be_present_in_element((By.TAG_NAME, "main"), "cannot be shown again"), "a reload shows no secret")
        check(token not in d.page_source, "the secret is gone after a reload")
        check(tid in d.find_element(By.TAG_NAME, "h1").text, "a reload shows the token's id")
        ok("a generated token is shown once; a reload shows only its id")
        d.find_element(By.LINK_TEXT, "Back to Security").click()
        row = [tr for tr in d.find_elements(By.CSS_SELECTOR, "tbody tr") if "okta-e2e" in tr.text]
        check(len(row) == 1, "the token's row")
        revoke = [b for b in row[0].find_elements(By.TAG_NAME, "button") if b.text == "Revoke"]
        check(revoke, "its Revoke button")
        revoke[0].click()
        wait(d, EC.text_to_be_present_in_element((By.CSS_SELECTOR, "[role=status]"), "Token revoked."), "the revoke is confirmed")
        check(scim_status(token) == 401, "SCIM refuses the revoked token")
        shot(d, "security")
        ok("a revoked token is refused by SCIM")

        # 5. Sync: a dry run, a run that holds, the approval.
        d.find_element(By.LINK_TEXT, "Sync").click()
        wait(d, EC.title_contains("Sync"), "the Sync page")
        axe(d, "Sync")
        button(d, "Dry run").click()
        wait(d, EC.title_contains("Dry run"), "the dry run's page")
        check("deactivate" in d.find_element(By.TAG_NAME, "table").text, "the dry run plans deactivations")
        axe(d, "a dry run")
        d.find_element(By.LINK_TEXT, "Sync").click()
        button(d, "Run now").click()
        wait(d, EC.text_to_be_present_in_element((By.TAG_NAME, "main"), "held"), "the run holds the deactivations")
        d.find_element(By.LINK_TEXT, "Sync").click()
        wait(d, EC.presence_of_element_located((By.CSS_SELECTOR, "section.held")), "the held set is listed")
        check("10 deactivation(s) held" in d.find_element(By.CSS_SELECTOR, "section.held").text, "ten are held")
        shot(d, "sync")
        button(d, "Approve").click()
        wait(d, EC.text_to_be_present_in_element((By.CSS_SELECTOR, "[role=status]"), "approved"), "the approval is confirmed")
        check(not d.find_elements(By.CSS_SELECTOR, "section.held"), "nothing is held any more")
        status = json.loads(cli("--output", "json", "sync", "status"))
        held = status.get("value", status).get("held")
        check(held == [], f"the CLI sees nothing held: {status}")
        ok("a held run is approved in the browser")

        # 6. Audit: the console's changes carry console:OWNER.
        d.find_element(By.LINK_TEXT, "Audit").click()
        wait(d, EC.title_contains("Audit"), "the Audit page")
        check(f"console:{OWNER}" in d.find_element(By.TAG_NAME, "table").text, "the audit names the console's owner")
        field(d, "Member").send_keys(STAFF)
        button(d, "Show").click()
        wait(d, EC.text_to_be_present_in_element((By.TAG_NAME, "table"), "locations"), "the audit filtered by member")
        axe(d, "Audit")
        shot(d, "audit")
        ok("the audit lists the console's changes as console:EMAIL")

        # 7. A cross-site form post is refused.
        staff_id = shown["id"]
        page = (f"<!doctype html><title>elsewhere</title><form method=post action='{CONSOLE}/members/{staff_id}/locations'>"
                "<input name=locations value=Hacked><input name=csrf value=guess><button>Go</button></form>")

        class Evil(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(page.encode())

            def log_message(self, *a):
                pass

        evil = http.server.HTTPServer(("127.0.0.1", 0), Evil)
        threading.Thread(target=evil.serve_forever, daemon=True).start()
        # localhost and 127.0.0.1 are different origins (and different sites).
        d.get(f"http://localhost:{evil.server_port}/")
        button(d, "Go").click()
        wait(d, EC.text_to_be_present_in_element((By.TAG_NAME, "body"), "Refused"), "the cross-site post is refused")
        evil.shutdown()
        shown = json.loads(cli("--output", "json", "members", "show", STAFF))
        check(shown["locations"] == ["Paris", "Lyon"], "the cross-site post changed nothing")
        ok("a cross-site form post is refused")

        # 8. Disconnect SCIM: asks first, revokes every token, offers the review of members.
        second = cli("token", "create", "--label", "second").split()
        second = next(w for w in second if w.startswith("rtsc_"))
        check(scim_status(second) == 200, "SCIM takes a token made by the CLI")
        d.get(f"{CONSOLE}/security")
        button(d, "Disconnect SCIM").click()
        wait(d, EC.title_contains("Disconnect SCIM"), "the confirmation page")
        axe(d, "Disconnect SCIM (confirmation)")
        button(d, "Disconnect SCIM").click()
        wait(d, EC.title_contains("SCIM disconnected"), "the disconnection's page")
        check(scim_status(second) == 401, "SCIM refuses every token after the disconnection")
        d.find_element(By.LINK_TEXT, "Review active members").click()
        wait(d, EC.url_contains("/members?status=active"), "Review active members opens the active members")
        check(Select(field(d, "Status")).first_selected_option.text == "Active", "the filter shows Active")
        ok("Disconnect SCIM revokes every token, then offers Review active members")

        # 9. Sign out.
        d.get(f"{CONSOLE}/members")
        button(d, "Sign out").click()
        wait(d, EC.url_to_be(f"{CONSOLE}/login"), "signing out lands on the sign-in page")
        d.get(f"{CONSOLE}/security")
        wait(d, EC.url_to_be(f"{CONSOLE}/login"), "after signing out, pages need a session again")
        ok("sign out ends the session")

        # 10. Sign in with Google (the fake signs the owner in).
        button_link = d.find_element(By.LINK_TEXT, "Sign in with Google")
        button_link.click()
        wait(d, EC.url_to_be(f"{CONSOLE}/members"), "Google's sign-in lands on Members")
        check(OWNER in d.find_element(By.TAG_NAME, "header").text, "signed in as the owner")
        ok("signed in with the fake Google's OpenID Connect")
    finally:
        d.quit()

    # 11. With JavaScript off, the core flows work.
    d = browser(javascript=False)
    try:
        sign_in_with_link(d)
        d.get(f"{CONSOLE}/members/{shown['id']}")
        loc = field(d, "Locations")
        loc.clear()
        loc.send_keys("Paris, Lyon")
        button(d, "Save locations").click()
        wait(d, EC.text_to_be_present_in_element((By.CSS_SELECTOR, "[role=status]"), "Locations saved."), "saving works without JavaScript")
        d.get(f"{CONSOLE}/security")
        check(not [b for b in d.find_elements(By.TAG_NAME, "button") if b.text == "Copy"], "no dead Copy button without JavaScript")
        ok("with JavaScript off, signing in and saving work")
    finally:
        d.quit()

    print(f"{passed} passed, 0 failed", flush=True)


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"browser test: {time.monotonic() - started:.1f} s", flush=True)
