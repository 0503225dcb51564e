#!/usr/bin/env python3
"""Renders contrib/grafana/retrac-sync.svg: the dashboard's main panels, drawn from the
demo's own /metrics, because Grafana is not available offline.

It starts `retrac-sync demo` (a pull every minute against the fake Google directory, which
changes a few users every minute), sends it some SCIM traffic (lists, searches, creates,
one bad token), scrapes /metrics every STEP seconds for MINUTES minutes, and draws the
panels with the same arithmetic as the dashboard's queries (rates and increases between
scrapes, quantiles from histogram buckets). Python 3 standard library only.

    python3 contrib/grafana/render-svg.py target/release/retrac-sync [MINUTES] [OUT.svg]
"""

import json
import re
import subprocess
import sys
import time
import urllib.request

STEP = 10  # seconds between scrapes
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')
LABEL = re.compile(r'([a-zA-Z_]+)="([^"]*)"')


def parse(text):
    """{(name, frozenset(labels)): value} of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = SAMPLE.match(line)
        if not m:
            continue
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        try:
            out[(m.group(1), labels)] = float(m.group(3))
        except ValueError:
            pass
    return out


def get(url, token=None, data=None, method=None):
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/scim+json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def start_demo(binary):
    proc = subprocess.Popen(
        [binary, "demo", "--users", "300", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    scim = token = metrics = None
    for line in proc.stdout:
        if line.startswith("SCIM endpoint"):
            scim = line.split()[-1]
        elif line.startswith("SCIM token"):
            token = line.split()[-1]
        elif line.startswith("Metrics"):
            metrics = line.split()[-1]
        if scim and token and metrics:
            break
    if not (scim and token and metrics):
        proc.kill()
        sys.exit("the demo did not print its URLs")
    return proc, scim, token, metrics


def traffic(scim, token, n):
    """A little SCIM traffic, as an identity provider would send it."""
    get(f"{scim}/Users?count=20&startIndex={1 + n % 50}", token)
    get(f"{scim}/Users?filter=userName%20sw%20%22ada%22", token)
    get(f"{scim}/Users?filter=userName%20eq%20%22nobody{n}%40example.com%22", token)
    if n % 3 == 0:
        body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": f"pushed{n}@example.com",
                "name": {"givenName": "Pushed", "familyName": str(n)}, "active": True}
        get(f"{scim}/Users", token, json.dumps(body).encode(), "POST")
    if n % 5 == 0:
        get(f"{scim}/Users", "rtsc_bad_token")


def total(sample, name, **match):
    return sum(v for (n, ls), v in sample.items()
               if n == name and all((k, w) in ls for k, w in match.items()))


def label_values(samples, name, label):
    vals = set()
    for s in samples:
        for (n, ls), _ in s.items():
            if n == name:
                vals.update(v for k, v in ls if k == label)
    return sorted(vals)


def quantile(q, buckets):
    """histogram_quantile over [(le, count)] sorted by le, linear within a bucket."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_c) / (c - prev_c) if c > prev_c else 0)
        prev_le, prev_c = le, c
    return prev_le


def bucket_deltas(a, b, name):
    out = {}
    for (n, ls), v in b.items():
        if n != name:
            continue
        le = dict(ls).get("le")
        key = float("inf") if le == "+Inf" else float(le)
        out[key] = out.get(key, 0) + v - sum(
            w for (m, l2), w in a.items() if m == name and l2 == ls)
    return sorted(out.items())


COLORS = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0"]


def panel_svg(x, y, w, h, title, series, unit="", bars=False):
    """One panel: title, axes, and lines (or bars) for [(label, [(t, v)])]."""
    out = [f'<g transform="translate({x},{y})">',
           f'<rect width="{w}" height="{h}" rx="3" fill="#181b1f" stroke="#2c3235"/>',
           f'<text x="10" y="20" fill="#ccccdc" font-size="13" font-weight="600">{title}</text>']
    px, py, pw, ph = 48, 32, w - 60, h - 72
    points = [p for _, s in series for p in s if p[1] is not None]
    if not points:
        out.append(f'<text x="{w / 2}" y="{h / 2}" fill="#8e8e8e" text-anchor="middle">no data</text></g>')
        return "\n".join(out)
    t0 = min(p[0] for p in points)
    t1 = max(p[0] for p in points) or 1
    vmax = max(p[1] for p in points) or 1
    vmax *= 1.1
    for i in range(5):
        gy = py + ph - ph * i / 4
        out.append(f'<line x1="{px}" x2="{px + pw}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="#2c3235"/>')
        out.append(f'<text x="{px - 4}" y="{gy + 4:.1f}" fill="#8e8e8e" font-size="10" text-anchor="end">{fmt(vmax * i / 4, unit)}</text>')
    for i in range(0, int((t1 - t0) / 60) + 1):
        gx = px + pw * (i * 60) / max(t1 - t0, 1)
        out.append(f'<text x="{gx:.1f}" y="{py + ph + 14}" fill="#8e8e8e" font-size="10" text-anchor="middle">{i}m</text>')

    def sx(t):
        return px + pw * (t - t0) / max(t1 - t0, 1)

    def sy(v):
        return py + ph - ph * v / vmax

    legend_x = 10
    for i, (label, s) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        pts = [(t, v) for t, v in s if v is not None]
        if bars:
            bw = max(pw / max(len(pts), 1) / (len(series) + 1), 2)
            for t, v in pts:
                if v > 0:
                    out.append(f'<rect x="{sx(t) - (len(series) - i) * bw:.1f}" y="{sy(v):.1f}" width="{bw:.1f}" height="{py + ph - sy(v):.1f}" fill="{color}"/>')
        elif pts and len(pts) < len(s):
            # A series with gaps (one value per pull run): dots, not a line across the gaps.
            for t, v in pts:
                out.append(f'<circle cx="{sx(t):.1f}" cy="{sy(v):.1f}" r="3" fill="{color}"/>')
        elif pts:
            d = " ".join(f"{'M' if j == 0 else 'L'}{sx(t):.1f},{sy(v):.1f}" for j, (t, v) in enumerate(pts))
            out.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        out.append(f'<rect x="{legend_x}" y="{h - 18}" width="10" height="3" fill="{color}"/>')
        out.append(f'<text x="{legend_x + 14}" y="{h - 13}" fill="#ccccdc" font-size="10">{label}</text>')
        legend_x += 14 + 6.5 * len(label) + 14
    out.append("</g>")
    return "\n".join(out)


def fmt(v, unit):
    if unit == "s":
        return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.1f} s"
    if unit == "/s":
        return f"{v:.2f}/s" if v < 10 else f"{v:.0f}/s"
    return f"{v:.0f}" if v >= 10 or v == int(v) else f"{v:.1f}"


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/retrac-sync"
    minutes = float(sys.argv[2]) if len(sys.argv) > 2 else 5
    out_path = sys.argv[3] if len(sys.argv) > 3 else "contrib/grafana/retrac-sync.svg"
    proc, scim, token, metrics = start_demo(binary)
    samples, times = [], []
    start = time.time()
    try:
        n = 0
        while time.time() - start < minutes * 60:
            traffic(scim, token, n)
            n += 1
            status, body = get(metrics)
            samples.append(parse(body.decode()))
            times.append(time.time() - start)
            time.sleep(STEP)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    pairs = list(zip(samples, samples[1:], times[1:]))
    dt = STEP

    def rate_by(name, label, **match):
        return [(v, [(t, (total(b, name, **{label: v}, **match) - total(a, name, **{label: v}, **match)) / dt)
                     for a, b, t in pairs])
                for v in label_values(samples, name, label)]

    def increase_by(name, label):
        return [(v, [(t, total(b, name, **{label: v}) - total(a, name, **{label: v})) for a, b, t in pairs])
                for v in label_values(samples, name, label)]

    members = [(s, [(t, total(x, "retrac_members", state=s)) for x, t in zip(samples, times)])
               for s in ("active", "inactive")]
    changes = increase_by("retrac_changes_total", "source")
    runs = increase_by("retrac_sync_runs_total", "status")
    duration = [("mean per run", [(t, ((total(b, "retrac_sync_duration_seconds_sum") - total(a, "retrac_sync_duration_seconds_sum"))
                                   / d) if (d := total(b, "retrac_sync_duration_seconds_count") - total(a, "retrac_sync_duration_seconds_count")) > 0 else None)
                                  for a, b, t in pairs])]
    held = [("held", [(t, total(x, "retrac_sync_held_changes")) for x, t in zip(samples, times)])]
    classes = {}
    for a, b, t in pairs:
        per = {}
        for (n, ls), v in b.items():
            if n == "retrac_scim_requests_total":
                c = dict(ls).get("status", "?")[0] + "xx"
                per[c] = per.get(c, 0) + (v - a.get((n, ls), 0)) / dt
        for c in per:
            classes.setdefault(c, []).append((t, per[c]))
    scim_status = sorted(classes.items())
    latency = [(f"p{int(q * 100)}", [(t, quantile(q, bucket_deltas(a, b, "retrac_scim_request_duration_seconds_bucket")))
                                    for a, b, t in pairs]) for q in (0.5, 0.95, 0.99)]
    google = increase_by("retrac_google_requests_total", "endpoint") + \
        [("retry " + r, s) for r, s in increase_by("retrac_google_retries_total", "reason")]
    build = next(((dict(ls).get("version"), dict(ls).get("commit")) for (n, ls) in samples[-1] if n == "retrac_build_info"), ("?", "?"))

    W, H, PW, PH = 1200, 740, 390, 220
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif">',
             f'<rect width="{W}" height="{H}" fill="#111217"/>',
             f'<text x="12" y="26" fill="#ccccdc" font-size="18" font-weight="600">retrac-sync</text>',
             f'<text x="130" y="26" fill="#8e8e8e" font-size="12">retrac-sync demo, {minutes:g} minutes, scraped every {STEP} s; version {build[0]} ({build[1]}); panels of contrib/grafana/retrac-sync.json</text>']
    grid = [
        ("Members", members, "", False),
        ("Changes by source (per scrape)", changes, "", True),
        ("Pull outcomes (runs per scrape)", runs, "", True),
        ("Pull duration per run", duration, "s", False),
        ("Held changes", held, "", False),
        ("SCIM status classes", scim_status, "/s", False),
        ("SCIM latency", latency, "s", False),
        ("Google requests and retries (per scrape)", google, "", True),
    ]
    for i, (title, series, unit, bars) in enumerate(grid):
        x = 10 + (i % 3) * (PW + 6)
        y = 40 + (i // 3) * (PH + 8)
        parts.append(panel_svg(x, y, PW, PH, title, series, unit, bars))
    parts.append("</svg>")
    with open(out_path, "w") as f:
        f.write("\n".join(parts) + "\n")
    print(f"{out_path}: {len(samples)} scrapes over {minutes:g} min")


if __name__ == "__main__":
    main()
