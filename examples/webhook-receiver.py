#!/usr/bin/env python3
"""A retrac-sync webhook receiver: verifies each delivery with the `standardwebhooks`
package (pip install standardwebhooks), applies member events in `seq` order and drops
stale versions (`data.member.version`). GET /state shows what it holds.

    WEBHOOK_SECRET=whsec_... python3 examples/webhook-receiver.py [PORT]

It prints the port it listens on (PORT 0: any free one) on its first line. POST /secret
with a new secret as the body switches to it (after `retrac-sync webhook rotate`)."""
import json, os, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

lock = threading.Lock()
state = {"secret": os.environ["WEBHOOK_SECRET"], "last_seq": 0, "members": {}, "rejected": 0}


class Handler(BaseHTTPRequestHandler):
    def reply(self, code, body=b""):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with lock:
            self.reply(200, json.dumps(state | {"secret": None}).encode())

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/secret":
            with lock:
                state["secret"] = body.decode().strip()
            return self.reply(204)
        try:
            with lock:
                wh = Webhook(state["secret"])
            headers = {k.lower(): v for k, v in self.headers.items()}
            event = wh.verify(body, headers)  # checks the signature and its time
        except WebhookVerificationError:
            with lock:
                state["rejected"] += 1
            return self.reply(401, b"bad signature")
        with lock:
            # Deliveries come in seq order; one already applied (a redelivery) is acknowledged.
            if event["seq"] > state["last_seq"]:
                member = event.get("data", {}).get("member")
                if member is not None:
                    held = state["members"].get(member["id"])
                    if held is None or held["version"] < member["version"]:
                        state["members"][member["id"]] = member
                state["last_seq"] = event["seq"]
        self.reply(204)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 8000), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
