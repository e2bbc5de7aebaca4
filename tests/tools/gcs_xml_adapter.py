#!/usr/bin/env python3
"""Fills the two gaps fake-gcs-server has in Google Cloud Storage's XML API, for
tests/gcs_azure.rs: an object upload (`PUT /BUCKET/OBJECT`) and an object delete
(`DELETE /BUCKET/OBJECT`), which GCS itself and Gauntlet's GCS client use, become the JSON API
calls fake-gcs-server does answer (a media upload, an object delete). Everything else (reads,
ranged reads, HEAD, listings) goes to fake-gcs-server unchanged, so the objects live there.

Usage: gcs_xml_adapter.py LISTEN_PORT UPSTREAM_PORT (both on 127.0.0.1). Prints "ready" once
listening; stops when its standard input closes or it is killed.
"""

import http.client
import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM = 0
HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


class Adapter(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _upstream(self, method, path, body, headers):
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=60)
        headers = {k: v for k, v in headers.items() if k.lower() not in HOP}
        headers["Host"] = f"127.0.0.1:{UPSTREAM}"
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp, data

    def _reply(self, status, headers, data, head=False):
        self.send_response(status)
        length = str(len(data))
        for k, v in headers:
            if head and k.lower() == "content-length":
                length = v  # a HEAD answer's length is the object's
            elif k.lower() not in HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", length)
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _object(self):
        """(bucket, object) of a path-style object URL, or None."""
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.lstrip("/").split("/", 1)
        if len(parts) != 2 or not parts[1] or url.path.startswith(("/storage/", "/upload/")):
            return None
        return parts[0], urllib.parse.unquote(parts[1])

    def _forward(self, head=False):
        body = self._body()
        resp, data = self._upstream(self.command, self.path, body, dict(self.headers))
        self._reply(resp.status, resp.getheaders(), data, head)

    def do_GET(self):
        self._forward()

    def do_HEAD(self):
        self._forward(head=True)

    def do_POST(self):
        self._forward()

    def do_PUT(self):
        obj = self._object()
        if obj is None or self.headers.get("x-goog-copy-source"):
            return self._forward()
        bucket, name = obj
        body = self._body()
        query = urllib.parse.urlencode({"uploadType": "media", "name": name})
        headers = {"Content-Type": self.headers.get("Content-Type", "application/octet-stream")}
        resp, data = self._upstream(
            "POST", f"/upload/storage/v1/b/{bucket}/o?{query}", body, headers
        )
        if resp.status != 200:
            return self._reply(resp.status, resp.getheaders(), data)
        meta = json.loads(data)
        self._reply(
            200,
            [("ETag", f"\"{meta['etag']}\""), ("x-goog-generation", meta["generation"])],
            b"",
        )

    def do_DELETE(self):
        obj = self._object()
        if obj is None:
            return self._forward()
        self._body()
        bucket, name = obj
        resp, data = self._upstream(
            "DELETE", f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}", b"", {}
        )
        ok = resp.status in (200, 204)
        self._reply(204 if ok else resp.status, [] if ok else resp.getheaders(), b"" if ok else data)


def main():
    global UPSTREAM
    listen, UPSTREAM = int(sys.argv[1]), int(sys.argv[2])
    server = ThreadingHTTPServer(("127.0.0.1", listen), Adapter)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
