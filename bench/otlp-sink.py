#!/usr/bin/env python3
"""A loopback OTLP/HTTP collector stand-in for bench/run's gateway-otel target: accepts
POST /v1/traces, reads the body, answers 200 with an empty ExportTraceServiceResponse (an
empty protobuf message is zero bytes), and counts requests and bytes (printed at exit).
It decodes nothing: what is measured is the gateway's cost of making and exporting spans,
not a collector's. Usage: otlp-sink.py PORT
"""
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

batches = 0
received = 0


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global batches, received
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        batches += 1
        received += length
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink)

    def stop(*_):
        print(f"otlp-sink: {batches} export requests, {received} bytes", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()


if __name__ == "__main__":
    main()
