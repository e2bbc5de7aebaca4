#!/usr/bin/env python3
"""A Thanos StoreAPI client built with grpcio from Gauntlet's .proto files (stubs generated at
run time with grpc_tools.protoc into a temp dir). Reads a JSON list of calls on stdin, prints a
JSON list of results: chunks as hex so the caller decodes them.

Usage: store_client.py PROTO_DIR HOST:PORT < calls.json
TLS when GAUNTLET_TLS_CA names a CA file (with GAUNTLET_TLS_CERT and GAUNTLET_TLS_KEY for a
client certificate, GAUNTLET_TLS_SERVER_NAME to check the server's certificate for that name).
A call: {"method": "Series"|"LabelNames"|"LabelValues"|"Info"|"StoreInfo", ...request fields},
or {"method": "Parallel", "calls": [...]} to make several calls at once,
or {"method": "RemoteWrite", "body": HEX} to send HEX as the serialized thanos.WriteRequest of a
thanos.WriteableStore/RemoteWrite call (the caller encodes it, or sends bytes that are not one)
(Series also takes max_resolution_window and aggregates, the StoreAPI Aggr numbers)
with matchers as [[type, name, value], ...] (type 0 =, 1 !=, 2 =~, 3 !~).
Any call takes "metadata": [[key, value], ...], gRPC metadata sent with it (a tenant header)."""
import atexit, glob, json, os, shutil, sys, tempfile

import grpc
from grpc_tools import protoc

proto_dir, addr = sys.argv[1], sys.argv[2]
out_dir = tempfile.mkdtemp(prefix="gauntlet-pb-")
atexit.register(shutil.rmtree, out_dir, ignore_errors=True)
# The rules and targets services are left out: they are not called here, and their enum values share names with
# the StoreAPI's in package `thanos`, which protoc refuses in one run.
files = sorted(f for f in glob.glob(os.path.join(proto_dir, "**", "*.proto"), recursive=True)
               if os.sep + "rules" + os.sep not in f and os.sep + "targets" + os.sep not in f)
inc = os.path.join(os.path.dirname(protoc.__file__), "_proto")
rc = protoc.main(["protoc", f"-I{proto_dir}", f"-I{inc}", f"--python_out={out_dir}",
                  f"--grpc_python_out={out_dir}"] + [os.path.relpath(f, proto_dir) for f in files])
if rc != 0:
    sys.exit(f"protoc failed: {rc}")
sys.path.insert(0, out_dir)
from thanos.store.storepb import rpc_pb2, rpc_pb2_grpc, types_pb2  # noqa: E402
from thanos.info.infopb import rpc_pb2 as info_pb2, rpc_pb2_grpc as info_grpc  # noqa: E402

options = [("grpc.max_receive_message_length", 1 << 30)]
if os.environ.get("GAUNTLET_TLS_CA"):
    # TLS: the CA that signed the server's certificate, and the client's certificate and key
    # when the server asks for one (mutual TLS); GAUNTLET_TLS_SERVER_NAME overrides the name
    # the server's certificate is checked against.
    def read(var):
        path = os.environ.get(var)
        return open(path, "rb").read() if path else None
    creds = grpc.ssl_channel_credentials(root_certificates=read("GAUNTLET_TLS_CA"),
                                         private_key=read("GAUNTLET_TLS_KEY"),
                                         certificate_chain=read("GAUNTLET_TLS_CERT"))
    if os.environ.get("GAUNTLET_TLS_SERVER_NAME"):
        options.append(("grpc.ssl_target_name_override", os.environ["GAUNTLET_TLS_SERVER_NAME"]))
    chan = grpc.secure_channel(addr, creds, options=options)
else:
    chan = grpc.insecure_channel(addr, options=options)
store = rpc_pb2_grpc.StoreStub(chan)
info = info_grpc.InfoStub(chan)
# Raw bytes in, raw bytes out: no serializer, so any bytes can be sent as the request.
remote_write = chan.unary_unary("/thanos.WriteableStore/RemoteWrite")


def matchers(c):
    return [types_pb2.LabelMatcher(type=t, name=n, value=v) for t, n, v in c.get("matchers", [])]


def metadata(c):
    return [(k, v) for k, v in c.get("metadata", [])]


def labels(ls):
    return {l.name: l.value for l in ls}


def call(c):
    m = c["method"]
    if m == "Info":
        r = info.Info(info_pb2.InfoRequest(), timeout=30, metadata=metadata(c))
        return {"component_type": r.ComponentType, "label_sets": [labels(s.labels) for s in r.label_sets],
                "has_store": r.HasField("store"), "has_query": r.HasField("query"), "min_time": r.store.min_time, "max_time": r.store.max_time,
                "supports_sharding": r.store.supports_sharding,
                "supports_without_replica_labels": r.store.supports_without_replica_labels,
                "tsdb_infos": [[labels(t.labels.labels), t.min_time, t.max_time] for t in r.store.tsdb_infos]}
    if m == "StoreInfo":
        r = store.Info(rpc_pb2.InfoRequest(), timeout=30, metadata=metadata(c))
        return {"store_type": r.storeType, "min_time": r.min_time, "max_time": r.max_time,
                "label_sets": [labels(s.labels) for s in r.label_sets]}
    if m == "LabelNames":
        r = store.LabelNames(rpc_pb2.LabelNamesRequest(start=c["start"], end=c["end"], matchers=matchers(c)),
                             timeout=60, metadata=metadata(c))
        return {"names": list(r.names), "warnings": list(r.warnings)}
    if m == "LabelValues":
        r = store.LabelValues(rpc_pb2.LabelValuesRequest(label=c["label"], start=c["start"], end=c["end"],
                                                         matchers=matchers(c)), timeout=60, metadata=metadata(c))
        return {"values": list(r.values), "warnings": list(r.warnings)}
    if m == "Series":
        req = rpc_pb2.SeriesRequest(
            min_time=c["min_time"], max_time=c["max_time"], matchers=matchers(c),
            skip_chunks=c.get("skip_chunks", False),
            without_replica_labels=c.get("without_replica_labels", []),
            limit=c.get("limit", 0),
            partial_response_strategy=c.get("partial_response_strategy", 0),
            max_resolution_window=c.get("max_resolution_window", 0),
            aggregates=c.get("aggregates", []),
            response_batch_size=c.get("response_batch_size", 0))
        if "shard" in c:
            i, n, by, ls = c["shard"]
            req.shard_info.CopyFrom(rpc_pb2.ShardInfo(shard_index=i, total_shards=n, by=by, labels=ls))
        series, warnings, hints, frames, largest = [], [], 0, 0, 0

        def wire_series(s):
            return {"labels": labels(s.labels), "chunks": [
                {"min_time": ch.min_time, "max_time": ch.max_time, "type": ch.raw.type,
                 "data": ch.raw.data.hex(),
                 # Downsampled chunks: the aggregate sub-chunks present, as hex.
                 "aggregates": {a: getattr(ch, a).data.hex()
                                for a in ("raw", "count", "sum", "min", "max", "counter")
                                if ch.HasField(a)}}
                for ch in s.chunks]}
        for r in store.Series(req, timeout=120, metadata=metadata(c)):
            kind = r.WhichOneof("result")
            if kind == "series":
                series.append(wire_series(r.series))
                frames, largest = frames + 1, max(largest, 1)
            elif kind == "batch":
                series.extend(wire_series(s) for s in r.batch.series)
                frames, largest = frames + 1, max(largest, len(r.batch.series))
            elif kind == "warning":
                warnings.append(r.warning)
            elif kind == "hints":
                hints += 1
        # frames: messages that carried series; largest: most series in one of them.
        return {"series": series, "warnings": warnings, "hints": hints, "frames": frames,
                "largest": largest}
    if m == "RemoteWrite":
        remote_write(bytes.fromhex(c["body"]), timeout=60)
        return {}
    if m == "Parallel":
        # The calls at once, each on its own thread and channel (concurrency limits).
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(len(c["calls"])) as pool:
            return {"results": list(pool.map(guarded, c["calls"]))}
    raise SystemExit(f"unknown method {m}")


def guarded(c):
    try:
        return {"ok": True, **call(c)}
    except grpc.RpcError as e:
        return {"ok": False, "code": e.code().name, "details": e.details()}


json.dump([guarded(c) for c in json.load(sys.stdin)], sys.stdout)
