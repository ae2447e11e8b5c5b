#!/usr/bin/env python3
"""The suite's stand-in for a profiling backend (no Pyroscope, Parca or OpenTelemetry
collector installs on these machines). It decodes what rprof pushes with definitions
independent of rprof's encoder:

- Pyroscope's PushRequest with the published push.proto (tests/push/proto/api, laid out
  as in grafana/pyroscope's api/ folder), compiled by
  grpcio-tools' protoc and read by Google's protobuf runtime; each embedded pprof is
  written to a file for `go tool pprof -raw` to read;
- OTLP's ExportProfilesServiceRequest with PyPI's opentelemetry-proto.

Usage: receiver.py OUT_DIR [--refuse N] [--hang]
Prints `port=N` on stdout once listening on 127.0.0.1. Appends one JSON line per request
to OUT_DIR/requests.jsonl. --refuse N answers the first N requests 503; --hang accepts
connections and never answers.
"""
import gzip
import json
import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))


def compile_push_proto():
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="rprof-push-proto-")
    protos = os.path.join(HERE, "proto")
    rc = protoc.main([
        "protoc",
        f"-I{protos}",
        f"--python_out={out}",
        os.path.join(protos, "api/types/v1/types.proto"),
        os.path.join(protos, "api/push/v1/push.proto"),
    ])
    if rc != 0:
        raise SystemExit(f"protoc failed on push.proto ({rc})")
    sys.path.insert(0, out)
    from api.push.v1 import push_pb2  # noqa: E402

    return push_pb2


def main():
    out_dir = sys.argv[1]
    refuse = 0
    hang = "--hang" in sys.argv
    if "--refuse" in sys.argv:
        refuse = int(sys.argv[sys.argv.index("--refuse") + 1])
    push_pb2 = compile_push_proto()
    from opentelemetry.proto.collector.profiles.v1development import (
        profiles_service_pb2 as otlp,
    )

    lock = threading.Lock()
    state = {"n": 0}
    log = open(os.path.join(out_dir, "requests.jsonl"), "a")

    def record(entry):
        with lock:
            log.write(json.dumps(entry) + "\n")
            log.flush()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            if hang:
                time.sleep(3600)
                return
            with lock:
                n = state["n"]
                state["n"] += 1
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            entry = {
                "n": n,
                "path": self.path,
                "received_unix": time.time(),
                "headers": {
                    k: self.headers.get(k)
                    for k in (
                        "Content-Type",
                        "Content-Encoding",
                        "Authorization",
                        "X-Scope-OrgID",
                        "Connect-Protocol-Version",
                    )
                    if self.headers.get(k) is not None
                },
            }
            if n < refuse:
                entry["status"] = 503
                record(entry)
                self.answer(503, b"refused by the test")
                return
            try:
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/push.v1.PusherService/Push":
                    entry["pyroscope"] = self.pyroscope(body, n)
                elif self.path == "/v1development/profiles":
                    entry["otlp"] = self.otlp(body)
                else:
                    entry["status"] = 404
                    record(entry)
                    self.answer(404, b"no such path")
                    return
            except Exception as e:  # a body that does not decode
                entry["status"] = 400
                entry["error"] = repr(e)
                record(entry)
                self.answer(400, repr(e).encode())
                return
            entry["status"] = 200
            record(entry)
            self.answer(200, b"", "application/proto")

        def answer(self, code, body, ctype="text/plain"):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def pyroscope(self, body, n):
            req = push_pb2.PushRequest()
            req.ParseFromString(body)
            series = []
            for i, s in enumerate(req.series):
                labels = {l.name: l.value for l in s.labels}
                files = []
                for j, sample in enumerate(s.samples):
                    path = os.path.join(out_dir, f"req{n}-series{i}-{j}.pb.gz")
                    with open(path, "wb") as f:
                        f.write(sample.raw_profile)
                    files.append({"file": path, "id": sample.ID})
                series.append({"labels": labels, "samples": files})
            return series

        def otlp(self, body):
            req = otlp.ExportProfilesServiceRequest()
            req.ParseFromString(body)
            d = req.dictionary
            st = d.string_table

            def attr(i):
                a = d.attribute_table[i]
                v = a.value
                return st[a.key_strindex], (
                    v.string_value if v.HasField("string_value") else v.int_value
                )

            out = []
            for rp in req.resource_profiles:
                resource = {}
                for kv in rp.resource.attributes:
                    v = kv.value
                    resource[kv.key] = (
                        v.string_value if v.HasField("string_value") else v.int_value
                    )
                for sp in rp.scope_profiles:
                    for p in sp.profiles:
                        flat = {}
                        cum = {}
                        total = 0
                        labels = set()
                        for s in p.samples:
                            v = sum(s.values)
                            total += v
                            stack = d.stack_table[s.stack_index]
                            names = []
                            for li in stack.location_indices:
                                loc = d.location_table[li]
                                for line in loc.lines:
                                    f = d.function_table[line.function_index]
                                    names.append(st[f.name_strindex])
                            if names:
                                flat[names[0]] = flat.get(names[0], 0) + v
                            for name in set(names):
                                cum[name] = cum.get(name, 0) + v
                            for ai in s.attribute_indices:
                                labels.add(attr(ai)[0])
                        out.append({
                            "resource": resource,
                            "scope": [sp.scope.name, sp.scope.version],
                            "sample_type": st[p.sample_type.type_strindex],
                            "unit": st[p.sample_type.unit_strindex],
                            "time_unix_nano": p.time_unix_nano,
                            "duration_nano": p.duration_nano,
                            "total": total,
                            "flat": flat,
                            "cum": cum,
                            "sample_labels": sorted(labels),
                            "attributes": dict(attr(i) for i in p.attribute_indices),
                            "profile_id": p.profile_id.hex(),
                        })
            return out

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"port={server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
