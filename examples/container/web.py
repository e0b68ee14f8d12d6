"""The example's web program: answers GET / on $PORT and logs each request to stdout."""

import http.server
import os
import signal
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from twinvisor\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


server = http.server.HTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), Handler)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a graceful stop: exit 0
print(f"listening on port {server.server_port}", flush=True)
server.serve_forever()
