"""The master's HTTP API from Blender's Python: urllib only, so the add-on needs no package.

Uploads go through the same chunked, content-addressed blob API as `farm submit`
(cli/upload/blob-upload.ts; docs/api.md "Blob endpoints"): HEAD says whether the master has the file
already, POST starts the upload or resumes the one in progress with the parts it holds, each
missing part is one PUT read from disk, and complete has the master check the SHA-256. A project
goes file by file (submit.py): `upload_blob` once for each file the master's manifest answer lacks.
"""

import hashlib
import json
import os
import time
import urllib.error
import urllib.request

# Network errors and 5xx are retried this many times, with these pauses (seconds) between.
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)


class FarmError(Exception):
    """The master refused (4xx, with its `{"error": ...}` message), or could not be reached."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class Master:
    def __init__(self, url, token=""):
        self.url = url.rstrip("/")
        self.token = token.strip()

    def request(self, method, path, body=None, data=None, headers=None, timeout=60):
        """The response's bytes. `body` is sent as JSON, `data` as raw bytes; 5xx are retried."""
        all_headers = dict(headers or {})
        if self.token:
            all_headers["Authorization"] = "Bearer " + self.token
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        for attempt in range(len(RETRY_DELAYS) + 1):
            req = urllib.request.Request(self.url + path, data=data, method=method, headers=all_headers)
            try:
                with urllib.request.urlopen(req, timeout=timeout) as response:
                    return response.read()
            except urllib.error.HTTPError as err:
                text = err.read().decode("utf-8", "replace")
                try:
                    message = json.loads(text).get("error") or text
                except ValueError:
                    message = text or err.reason
                if err.code < 500 or attempt == len(RETRY_DELAYS):
                    raise FarmError("%s %s: %s (HTTP %d)" % (method, path, message, err.code), err.code) from None
            except (urllib.error.URLError, OSError) as err:
                if attempt == len(RETRY_DELAYS):
                    reason = getattr(err, "reason", err)
                    raise FarmError("cannot reach the master at %s: %s" % (self.url, reason)) from None
            time.sleep(RETRY_DELAYS[attempt])
        raise AssertionError("unreachable")

    def json(self, method, path, body=None):
        return json.loads(self.request(method, path, body=body).decode("utf-8"))

    def blob_exists(self, sha256):
        try:
            self.request("HEAD", "/blobs/%s" % sha256)
            return True
        except FarmError as err:
            if err.status == 404:
                return False
            raise

    def upload_blob(self, path, sha256, on_progress=None):
        """Uploads `path` as blob `sha256`, sending only the parts the master lacks.

        `on_progress(done_bytes, total_bytes)` is called as parts go. Returns the bytes sent.
        """
        size = os.path.getsize(path)
        report = on_progress or (lambda done, total: None)
        if self.blob_exists(sha256):
            report(size, size)
            return 0
        sent = 0
        # The master may forget an upload mid-way (aborted, expired): start again, once or twice.
        for round_ in range(3):
            state = self.json("POST", "/blobs/%s/uploads" % sha256, {"size": size})
            if state.get("blob_exists"):
                report(size, size)
                return sent
            part_size, count = state["part_size"], state["part_count"]
            done = set(state.get("parts_done", []))
            done_bytes = sum(min(part_size, size - part_size * (n - 1)) for n in done)
            report(done_bytes, size)
            base = "/blobs/%s/uploads/%s" % (sha256, state["upload_id"])
            try:
                with open(path, "rb") as f:
                    for n in range(1, count + 1):
                        if n in done:
                            continue
                        f.seek(part_size * (n - 1))
                        chunk = f.read(part_size)
                        self.request("PUT", "%s/parts/%d" % (base, n), data=chunk, headers={"Content-Type": "application/octet-stream"}, timeout=300)
                        sent += len(chunk)
                        done_bytes += len(chunk)
                        report(done_bytes, size)
                info = self.json("POST", base + "/complete")
            except FarmError as err:
                if err.status == 404 and round_ < 2:
                    continue
                raise
            if info.get("sha256") != sha256 or info.get("size") != size:
                raise FarmError("the master recorded %s (%s bytes), not %s (%d bytes)" % (info.get("sha256"), info.get("size"), sha256, size))
            return sent
        raise FarmError("the master kept forgetting the upload of %s" % sha256)

    def frames(self, job_id):
        """Every rendered frame of the job (`GET /jobs/{id}/frames`, page by page)."""
        found, after = [], None
        while True:
            query = "?limit=1000" + ("&after=%d" % after if after is not None else "")
            page = self.json("GET", "/jobs/%s/frames%s" % (job_id, query))
            found.extend(page["frames"])
            after = page.get("next_after")
            if after is None or not page["frames"]:
                return found


def sha256_of_file(path, on_bytes=None):
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(block)
            done += len(block)
            if on_bytes:
                on_bytes(done)
    return digest.hexdigest()
