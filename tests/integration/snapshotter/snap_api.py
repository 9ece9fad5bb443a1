"""containerd's snapshots v1 API of chunkfly-snapshotter, driven by an independent gRPC client
(python3-grpcio) with messages generated from our snapshots.proto by Google's protoc.

usage: snap_api.py PB_DIR SOCKET ROOT PHASE   (PHASE: main | after_restart)"""
import os
import sys

import grpc

sys.path.insert(0, sys.argv[1])
import snapshots_pb2 as pb  # noqa: E402

SOCK, ROOT, PHASE = sys.argv[2], sys.argv[3], sys.argv[4]
SVC = "/containerd.services.snapshots.v1.Snapshots/"
ch = grpc.insecure_channel("unix:" + SOCK)


def call(method, req, resp_type, stream=False):
    mk = ch.unary_stream if stream else ch.unary_unary
    fn = mk(SVC + method, request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=resp_type.FromString)
    return list(fn(req, timeout=30)) if stream else fn(req, timeout=30)


def expect(code, method, req, resp_type, stream=False, text=None):
    try:
        call(method, req, resp_type, stream)
    except grpc.RpcError as e:
        if e.code() != code:
            sys.exit(f"FAIL: {method}: {e.code()} {e.details()!r}, expected {code}")
        if text and text not in e.details():
            sys.exit(f"FAIL: {method}: message {e.details()!r} lacks {text!r}")
        print(f"ok: {method} -> {code.name}: {e.details()}")
        return
    sys.exit(f"FAIL: {method} succeeded, expected {code}")


def prepare(key, parent="", labels=None, view=False):
    r = pb.PrepareSnapshotRequest(snapshotter="chunkfly", key=key, parent=parent,
                                  labels=labels or {})
    return call("View" if view else "Prepare", r, pb.MountsResponse).mounts


def stat(key):
    return call("Stat", pb.KeyRequest(key=key), pb.InfoResponse).info


def check(cond, what):
    if not cond:
        sys.exit("FAIL: " + what)
    print("ok:", what)


def fs(info_id):
    return f"{ROOT}/snapshots/{info_id}/fs"


def main():
    C = grpc.StatusCode
    m = prepare("a", labels={"x": "y"})
    check(len(m) == 1 and m[0].type == "bind" and "rw" in m[0].options,
          f"Prepare without parent: a rw bind ({m[0].type} {list(m[0].options)})")
    a_fs = m[0].source
    check(os.path.isdir(a_fs), "its directory exists")
    expect(C.ALREADY_EXISTS, "Prepare", pb.PrepareSnapshotRequest(key="a"), pb.MountsResponse)
    i = stat("a")
    check(i.kind == pb.ACTIVE and i.labels["x"] == "y" and i.created_at.seconds > 0,
          "Stat: active, labels, created time")
    with open(os.path.join(a_fs, "file"), "wb") as f:
        f.write(os.urandom(100000))
    u = call("Usage", pb.KeyRequest(key="a"), pb.UsageResponse)
    check(u.size >= 100000 and u.inodes >= 2, f"Usage of an active snapshot ({u.size} B, {u.inodes} inodes)")
    call("Commit", pb.CommitSnapshotRequest(name="c1", key="a", labels={"z": "1"}), pb.Empty)
    expect(C.NOT_FOUND, "Stat", pb.KeyRequest(key="a"), pb.InfoResponse)
    i = stat("c1")
    check(i.kind == pb.COMMITTED and i.labels["x"] == "y" and i.labels["z"] == "1",
          "Commit: committed under the new name, labels merged")
    u = call("Usage", pb.KeyRequest(key="c1"), pb.UsageResponse)
    check(u.size >= 100000, "Usage of a committed snapshot (measured at commit)")
    expect(C.FAILED_PRECONDITION, "Commit", pb.CommitSnapshotRequest(name="c2", key="c1"),
           pb.Empty, text="not active")
    m = prepare("b", "c1")
    opts = list(m[0].options)
    check(m[0].type == "overlay" and f"lowerdir={a_fs}" in opts and
          any(o.startswith("upperdir=") for o in opts), "Prepare on a parent: overlay")
    m2 = call("Mounts", pb.KeyRequest(key="b"), pb.MountsResponse).mounts
    check(list(m2[0].options) == opts, "Mounts repeats Prepare's answer")
    m = prepare("v", "c1", view=True)
    check(m[0].type == "bind" and "ro" in m[0].options and m[0].source == a_fs,
          "View of one layer: a read-only bind of it")
    expect(C.NOT_FOUND, "Prepare", pb.PrepareSnapshotRequest(key="x", parent="nosuch"),
           pb.MountsResponse, text="nosuch")
    expect(C.INVALID_ARGUMENT, "Prepare", pb.PrepareSnapshotRequest(key="x", parent="b"),
           pb.MountsResponse, text="not a committed")
    expect(C.FAILED_PRECONDITION, "Remove", pb.KeyRequest(key="c1"), pb.Empty, text="children")
    expect(C.NOT_FOUND, "Remove", pb.KeyRequest(key="nosuch"), pb.Empty)
    expect(C.NOT_FOUND, "Mounts", pb.KeyRequest(key="nosuch"), pb.MountsResponse)
    # Update: one label by field mask, then every label
    info = pb.Info(name="c1", labels={"x": "new"})
    r = call("Update", pb.UpdateSnapshotRequest(info=info, update_mask=pb.FieldMask(
        paths=["labels.x"])), pb.InfoResponse).info
    check(r.labels["x"] == "new" and r.labels["z"] == "1", "Update labels.x keeps the others")
    r = call("Update", pb.UpdateSnapshotRequest(info=pb.Info(name="c1", labels={"only": "1"})),
             pb.InfoResponse).info
    check(dict(r.labels) == {"only": "1"}, "Update without a mask replaces the labels")
    expect(C.INVALID_ARGUMENT, "Update", pb.UpdateSnapshotRequest(
        info=pb.Info(name="c1", kind=pb.ACTIVE), update_mask=pb.FieldMask(paths=["kind"])),
        pb.InfoResponse, text="only labels")
    expect(C.INVALID_ARGUMENT, "Prepare", pb.PrepareSnapshotRequest(
        key="big", labels={"k": "v" * 5000}), pb.MountsResponse, text="4096")
    # a Nydus data layer: committed at once under the target name, nothing to unpack
    expect(C.ALREADY_EXISTS, "Prepare", pb.PrepareSnapshotRequest(key="default/9/extract-1", labels={
        "containerd.io/snapshot.ref": "sha256:chain1",
        "containerd.io/snapshot/nydus-blob": "true"}), pb.MountsResponse, text="remote")
    i = stat("sha256:chain1")
    check(i.kind == pb.COMMITTED and i.labels["containerd.io/snapshot.ref"] == "sha256:chain1",
          "the remote layer is committed with its labels (containerd's Walk finds it)")
    expect(C.NOT_FOUND, "Stat", pb.KeyRequest(key="default/9/extract-1"), pb.InfoResponse)
    # a container over an image whose bootstrap layer has no image.boot: a clear refusal
    prepare("boot-x", "sha256:chain1")
    call("Commit", pb.CommitSnapshotRequest(name="sha256:bootx", key="boot-x", labels={
        "containerd.io/snapshot/nydus-bootstrap": "true",
        "containerd.io/snapshot/remote/stargz.reference": "127.0.0.1:1/x/y:z"}), pb.Empty)
    expect(C.INVALID_ARGUMENT, "Prepare", pb.PrepareSnapshotRequest(key="ctr", parent="sha256:bootx"),
           pb.MountsResponse, text="image.boot")
    expect(C.NOT_FOUND, "Stat", pb.KeyRequest(key="ctr"), pb.InfoResponse)
    # malformed bytes: not a protobuf message
    raw = ch.unary_unary(SVC + "Stat", request_serializer=None, response_deserializer=None)
    try:
        raw(b"\xff\xff\xff", timeout=10)
        sys.exit("FAIL: a malformed request was accepted")
    except grpc.RpcError as e:
        check(e.code() == C.INVALID_ARGUMENT, f"malformed request -> {e.code().name}")
    # List streams every snapshot, in several messages past 100
    for n in range(250):
        prepare(f"many-{n}", "c1")
    msgs = call("List", pb.ListSnapshotsRequest(snapshotter="chunkfly"), pb.ListSnapshotsResponse,
                stream=True)
    names = {i.name for msg in msgs for i in msg.info}
    check(len(msgs) >= 3 and {"c1", "b", "v", "many-0", "many-249", "sha256:chain1"} <= names,
          f"List: {len(names)} snapshots in {len(msgs)} messages")
    for n in range(250):
        call("Remove", pb.KeyRequest(key=f"many-{n}"), pb.Empty)
    b_dir = os.path.dirname(prepare("b2", "c1")[0].options[1].split("=", 1)[1])
    call("Remove", pb.KeyRequest(key="b2"), pb.Empty)
    check(not os.path.exists(b_dir), "Remove deletes the snapshot's directory")
    os.makedirs(f"{ROOT}/snapshots/999999/fs/junk")
    call("Cleanup", pb.CleanupRequest(), pb.Empty)
    check(not os.path.exists(f"{ROOT}/snapshots/999999"), "Cleanup removes directories no snapshot owns")


def after_restart():
    i = stat("c1")
    check(i.kind == pb.COMMITTED and dict(i.labels) == {"only": "1"},
          "after kill -9 and restart: committed snapshot and its labels are there")
    check(stat("b").kind == pb.ACTIVE, "the active snapshot too")
    m = call("Mounts", pb.KeyRequest(key="b"), pb.MountsResponse).mounts
    check(m[0].type == "overlay", "and its mounts")
    call("Remove", pb.KeyRequest(key="b"), pb.Empty)
    call("Remove", pb.KeyRequest(key="v"), pb.Empty)
    call("Remove", pb.KeyRequest(key="sha256:bootx"), pb.Empty)
    call("Remove", pb.KeyRequest(key="sha256:chain1"), pb.Empty)
    call("Remove", pb.KeyRequest(key="c1"), pb.Empty)
    msgs = call("List", pb.ListSnapshotsRequest(), pb.ListSnapshotsResponse, stream=True)
    check(sum(len(x.info) for x in msgs) == 0, "everything removed: List is empty")
    left = os.listdir(f"{ROOT}/snapshots")
    check(left == [], f"no snapshot directories left ({left})")


main() if PHASE == "main" else after_restart()
