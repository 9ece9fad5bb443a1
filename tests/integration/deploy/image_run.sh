#!/bin/bash
# deploy/image/build.sh makes a reproducible image that runs: two builds of the same binaries
# give the same manifest digest and byte-identical archives, --push puts that digest in a real
# docker-registry, the reference is IMAGE= of deploy/image/image.env, a Release image stays
# under 30 MB compressed; a real containerd (its own root, state and socket under $T) imports
# the OCI archive and `ctr run` starts chunkfly-scheduler and chunkfly-peer as the image's
# non-root user, both /healthz answer 200, the peer's mirror listens; every other binary
# answers --help inside the image (so its ldd closure is complete).
. "$(dirname "$0")/../../lib/testlib.sh"

need_root
for b in umoci containerd ctr runc curl; do
    command -v "$b" >/dev/null || skip "$b not installed (.ci/install-deps)"
done
for b in chunkfly-peer chunkfly-scheduler chunkfly-mount chunkfly-snapshotter chunkfly chunkfly-image; do need_bin "$b"; done
BUILD_SH=$CHUNKFLY_SRC/deploy/image/build.sh
REF=$(sed -n 's/^IMAGE=//p' "$CHUNKFLY_SRC/deploy/image/image.env")

note "two builds of the same binaries: same digest"
[ "$("$BUILD_SH" --print-ref)" = "$REF" ] || fail "build.sh --print-ref != deploy/image/image.env"
"$BUILD_SH" --bin-dir "$CHUNKFLY_BIN" --out "$T/img1" >"$T/build1.log" 2>&1 ||
    { cat "$T/build1.log"; fail "build.sh (1)"; }
# the second build also pushes (--push) to a real docker-registry
PUSH=()
if command -v skopeo >/dev/null && command -v docker-registry >/dev/null; then
    start_registry
    PUSH=(--push "$REGISTRY/chunkfly/chunkfly:${REF##*:}")
else
    note "skopeo or docker-registry not installed: --push not tested"
fi
SKOPEO_ARGS=--dest-tls-verify=false "$BUILD_SH" --bin-dir "$CHUNKFLY_BIN" --out "$T/img2" \
    "${PUSH[@]}" >"$T/build2.log" 2>&1 || { cat "$T/build2.log"; fail "build.sh (2)"; }
read -r _ ref1 dg1 size1 < <(grep '^image ' "$T/build1.log")
read -r _ _ dg2 _ < <(grep '^image ' "$T/build2.log")
echo "image $ref1 $dg1, $size1 bytes compressed"
[ "$ref1" = "$REF" ] || fail "build.sh made $ref1, image.env says $REF"
[ "$dg1" = "$dg2" ] || fail "not reproducible: $dg1 then $dg2"
[ "$(cat "$T/img1/digest")" = "$dg1" ] || fail "digest file"
cmp "$T/img1/chunkfly.oci.tar" "$T/img2/chunkfly.oci.tar" || fail "archives differ"
if [ ${#PUSH[@]} -gt 0 ]; then
    # the registry serves the same manifest: same digest
    pushed=$(curl -fsS -o /dev/null -D - \
        -H "Accept: application/vnd.oci.image.manifest.v1+json" \
        "http://$REGISTRY/v2/chunkfly/chunkfly/manifests/${REF##*:}" |
        tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" {print $2}')
    [ "$pushed" = "$dg1" ] || fail "--push: the registry has $pushed, built $dg1"
    echo "pushed to $REGISTRY: $pushed"
fi
btype=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$CHUNKFLY_BUILD/CMakeCache.txt" 2>/dev/null || true)
if [ "$btype" = Release ]; then
    [ "$size1" -le $((30 * 1000 * 1000)) ] || fail "image is $size1 bytes compressed (goal <= 30 MB)"
else
    note "build type '$btype': the 30 MB goal is checked on Release images only"
fi
rm -rf "$T/img2"

note "containerd imports the OCI archive"
C=$T/ctrd
mkdir -p "$C"
cat >"$C/config.toml" <<TOML
version = 2
root = "$C/root"
state = "$C/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$C/containerd.sock"
[ttrpc]
  address = "$C/containerd-ttrpc.sock"
TOML
bg_start "$C/containerd.log" containerd --config "$C/config.toml"
CTRD_PID=$CF_LAST_PID
for _ in $(seq 100); do [ -S "$C/containerd.sock" ] && break; sleep 0.1; done
CTR=(ctr -a "$C/containerd.sock" -n chunkfly-test)
"${CTR[@]}" version >/dev/null 2>&1 || { cat "$C/containerd.log"; fail "containerd did not start"; }
# containers first (their tasks and mounts), then containerd, then testlib's cleanup
CIDS=()
NETNS_DEL=""
ctrd_cleanup() {
    local rc=$? id
    set +e
    for id in "${CIDS[@]}"; do
        "${CTR[@]}" task kill -s SIGKILL "$id" >/dev/null 2>&1
        for _ in $(seq 30); do "${CTR[@]}" task delete "$id" >/dev/null 2>&1 && break; sleep 0.1; done
        "${CTR[@]}" container delete "$id" >/dev/null 2>&1
    done
    [ -n "$NETNS_DEL" ] && ip netns del "$NETNS_DEL" 2>/dev/null
    kill "$CTRD_PID" 2>/dev/null
    wait "$CTRD_PID" 2>/dev/null
    umount -R "$C/root" 2>/dev/null
    (exit $rc)
    cf_cleanup
}
trap ctrd_cleanup EXIT
base=${REF%:*}
"${CTR[@]}" images import --base-name "$base" "$T/img1/chunkfly.oci.tar" >"$T/import.log" 2>&1 ||
    { cat "$T/import.log"; fail "ctr images import"; }
"${CTR[@]}" images ls -q | grep -qxF "$REF" || fail "imported image is not named $REF: $("${CTR[@]}" images ls -q)"
[ "$("${CTR[@]}" images ls | awk -v r="$REF" '$1 == r {print $3}')" = "$dg1" ] ||
    fail "imported digest differs: $("${CTR[@]}" images ls)"

note "every binary answers --help inside the image"
for b in chunkfly chunkfly-image chunkfly-mount chunkfly-peer chunkfly-scheduler chunkfly-snapshotter chunkfly-convertd; do
    "${CTR[@]}" run --rm "$REF" "help-$b" "$b" --help >"$T/help-$b" 2>&1 ||
        { cat "$T/help-$b"; fail "$b --help failed in the image"; }
    grep -qi "usage" "$T/help-$b" || { cat "$T/help-$b"; fail "$b --help: no usage"; }
done
"${CTR[@]}" run --rm "$REF" help-default >"$T/help-default" 2>&1 || fail "the image's default command"

# run_daemon ID ARGS...: a detached task on the host network, output in $T/ID.log
run_daemon() {
    local id=$1; shift
    CIDS+=("$id")
    "${CTR[@]}" run -d --net-host --log-uri "file://$T/$id.log" "$REF" "$id" "$@" >/dev/null ||
        fail "ctr run $id"
}
# healthz HOST:PORT ID: /healthz answers 200 (up to 20 s) while the task runs
healthz() {
    local code=000
    for _ in $(seq 100); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://$1/healthz" || true)
        [ "$code" = 200 ] && return 0
        sleep 0.2
    done
    cat "$T/$2.log"
    fail "$2: /healthz on $1 answered $code"
}
# task_uid ID: the uid the task's process runs as, seen from the host
task_uid() {
    local pid
    pid=$("${CTR[@]}" task ls | awk -v id="$1" '$1 == id {print $2}')
    awk '/^Uid:/ {print $2}' "/proc/$pid/status"
}

note "chunkfly-scheduler and chunkfly-peer run in the image, /healthz answers"
SP=$(free_port); SH=$(free_port)
run_daemon sched chunkfly-scheduler --listen "127.0.0.1:$SP" --http "127.0.0.1:$SH"
healthz "127.0.0.1:$SH" sched
PP=$(free_port); PH=$(free_port); PM=$(free_port)
# /run is the runtime's tmpfs (root's): the socket goes to /tmp; the cache is the image's own
# /var/cache/chunkfly, which belongs to the image's user
run_daemon peer chunkfly-peer --listen "127.0.0.1:$PP" --http "127.0.0.1:$PH" \
    --scheduler "127.0.0.1:$SP" --api-socket /tmp/peer.sock --set "mirror_listen=127.0.0.1:$PM"
healthz "127.0.0.1:$PH" peer
wait_port 127.0.0.1 "$PM"
for id in sched peer; do
    [ "$(task_uid "$id")" = 65532 ] || fail "$id runs as uid $(task_uid "$id"), not the image's user"
done
curl -sf -o "$T/metrics" "http://127.0.0.1:$SH/metrics" && [ -s "$T/metrics" ] || fail "scheduler /metrics"

note "the Kubernetes workloads run as deploy/k8s says"
# Each workload's command and args (with $(NODE_IP) expanded as the kubelet does), its
# ConfigMap and Secret files, hostPath directories and read-only root, in a network namespace of
# its own (lo up: the manifests' fixed ports cannot clash with anything), then its probes must
# answer 200 and every declared port must listen. ctr 1.6 has no --user: the processes run as
# the image's user, so the hostPath stand-ins belong to it (docs/deploy.md: the non-root variant).
if ! command -v kubectl >/dev/null || ! command -v ip >/dev/null; then
    note "SKIPPED PART: kubectl or ip not installed: the workloads are not run"
    echo "ok"
    exit 0
fi
kubectl kustomize "$CHUNKFLY_SRC/deploy/k8s" >"$T/rendered.yaml" || fail "kubectl kustomize deploy/k8s"
# the Secret the operator creates for chunkfly-convertd (docs/deploy.md)
CVD_AUTH="Bearer deploy-test-$$"
printf -- '---\napiVersion: v1\nkind: Secret\nmetadata: {name: chunkfly-convertd-auth, namespace: chunkfly}\nstringData: {auth_header: "%s"}\n' \
    "$CVD_AUTH" >>"$T/rendered.yaml"
NS=cftest-deploy-$$
ip netns add "$NS" || fail "ip netns add"
NETNS_DEL=$NS
ip -n "$NS" link set lo up
in_ns() { ip netns exec "$NS" "$@"; }
run_workload() { # KIND NAME ID
    local kind=$1 name=$2 id=$3 w=$T/$3 word a b c d
    local args=() mounts=() probes=() ports=()
    python3 "$CHUNKFLY_SRC/tests/integration/deploy/k8s_to_ctr.py" "$T/rendered.yaml" "$kind" \
        "$name" "$w" 127.0.0.1 >"$T/$id.spec" || fail "$kind/$name: k8s_to_ctr.py"
    while read -r word a b c d; do
        case $word in
            ARG) args+=("$a") ;;
            MOUNT) mounts+=(--mount "type=bind,src=$a,dst=$b,options=rbind:$c") ;;
            PROBE) probes+=("$b:$c$d") ;;
            PORT) ports+=("$a") ;;
        esac
    done <"$T/$id.spec"
    [ -d "$w/host" ] && chown -R 65532:65532 "$w/host"  # hostPath and claim stand-ins
    # volumes readable by the image's user (a key from the CSI driver: its fs-group)
    for d in "$w"/vol-*; do if [ -d "$d" ]; then chown -R 65532:65532 "$d"; fi; done
    CIDS+=("$id")
    "${CTR[@]}" run -d --read-only --with-ns "network:/var/run/netns/$NS" "${mounts[@]}" \
        --log-uri "file://$T/$id.log" "$REF" "$id" "${args[@]}" >/dev/null || fail "ctr run $id"
    local p code
    for p in "${probes[@]}"; do
        code=000
        for _ in $(seq 100); do
            code=$(in_ns curl -s -o /dev/null -w '%{http_code}' "http://$p" || true)
            [ "$code" = 200 ] && break
            sleep 0.2
        done
        [ "$code" = 200 ] || { cat "$T/$id.log"; fail "$kind/$name: probe http://$p answered $code"; }
    done
    for p in "${ports[@]}"; do
        in_ns ss -Htln "sport = :$p" | grep -q . || { cat "$T/$id.log"; fail "$kind/$name: nothing listens on port $p"; }
    done
    echo "$kind/$name: probes ${probes[*]} answer 200, ports ${ports[*]} listen"
}
run_workload Deployment chunkfly-scheduler k8s-sched
run_workload DaemonSet chunkfly-peer k8s-peer
# the node's side of the hostPaths: the local API socket and the cache
sock=$T/k8s-peer/host/run/chunkfly/peer.sock
[ -S "$sock" ] || fail "the peer's socket is not in its /run/chunkfly hostPath"
"$CHUNKFLY_BIN/chunkfly" status --peer "$sock" >"$T/status.out" 2>&1 ||
    { cat "$T/status.out"; fail "chunkfly status through the hostPath socket"; }
[ -n "$(ls -A "$T/k8s-peer/host/var/cache/chunkfly")" ] || fail "nothing in the cache hostPath"
grep -q "peer peer-127.0.0.1:4100: upload 0.0.0.0:4100" "$T/k8s-peer.log" ||
    { cat "$T/k8s-peer.log"; fail "the peer does not advertise NODE_IP:4100"; }
run_workload Deployment chunkfly-convertd k8s-cvd
# its queue is on the claim's volume; POSTs need the Secret's header
[ -e "$T/k8s-cvd/host/pvc/chunkfly-convertd/queue/data.mdb" ] || fail "convertd's queue is not on its claim"
code=$(in_ns curl -s -o /dev/null -w '%{http_code}' -X POST -d '{"src": "127.0.0.1:9/a:b"}' \
    http://127.0.0.1:2077/api/v1/conversions || true)
[ "$code" = 401 ] || fail "convertd without the Secret's Authorization: $code, expected 401"
code=$(in_ns curl -s -o /dev/null -w '%{http_code}' -H "Authorization: $CVD_AUTH" \
    -X POST -d '{"src": "not a ref"}' http://127.0.0.1:2077/api/v1/conversions || true)
[ "$code" = 400 ] || fail "convertd with the Secret's Authorization: $code, expected 400 (bad body)"

note "the peer learns the scheduler from the headless Service's name and uses it"
# the origin: a docker-registry in the namespace, a blob above small_blob (it goes through the
# scheduler: the connection and the announcement happen only for such a task)
mkdir -p "$T/nsreg/data"
printf 'version: 0.1\nlog: {level: warn, accesslog: {disabled: true}}\nstorage:\n  filesystem: {rootdirectory: %s}\nhttp:\n  addr: 127.0.0.1:5000\n' \
    "$T/nsreg/data" >"$T/nsreg/config.yml"
bg_start "$T/nsreg/log" ip netns exec "$NS" docker-registry serve "$T/nsreg/config.yml"
for _ in $(seq 100); do in_ns curl -fs -o /dev/null http://127.0.0.1:5000/v2/ && break; sleep 0.1; done
# ns_push FILE: the blob into test/deploy of the namespace's registry; sets NSBLOB
ns_push() {
    local h loc
    h=$(sha256sum "$1" | cut -d' ' -f1)
    loc=$(in_ns curl -fsSi -X POST http://127.0.0.1:5000/v2/test/deploy/blobs/uploads/ |
        tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
    case $loc in http*) ;; *) loc="http://127.0.0.1:5000$loc" ;; esac
    case $loc in *\?*) loc="$loc&digest=sha256:$h" ;; *) loc="$loc?digest=sha256:$h" ;; esac
    in_ns curl -fsS -X PUT -H "Content-Type: application/octet-stream" --data-binary "@$1" "$loc" >/dev/null || fail "push to the namespace's registry"
    NSBLOB=127.0.0.1:5000/test/deploy@sha256:$h
}
# mesh_check PEER_ID SCHED_ID: the peer's table is the Service's address, a blob fetched
# through the hostPath socket registers with the scheduler, which then counts the peer
mesh_check() {
    local got=""
    for _ in $(seq 50); do
        got=$(in_ns curl -fsS http://127.0.0.1:4101/status | python3 -c \
            'import json, sys; print(" ".join(s["addr"] for s in json.load(sys.stdin)["schedulers"]))')
        [ "$got" = "127.0.0.1:8002" ] && break
        sleep 0.2
    done
    [ "$got" = "127.0.0.1:8002" ] || { cat "$T/$1.log"; fail "$1: scheduler table '$got', expected the Service's 127.0.0.1:8002"; }
    head -c $((5 * 1048576 + 99)) /dev/urandom >"$T/$1.blob"
    ns_push "$T/$1.blob"
    "$CHUNKFLY_BIN/chunkfly" get -q --peer "$T/$1/host/run/chunkfly/peer.sock" "$NSBLOB" \
        -o "$T/$1.out" >"$T/$1.get" 2>&1 || { cat "$T/$1.get" "$T/$1.log"; fail "$1: chunkfly get"; }
    cmp -s "$T/$1.blob" "$T/$1.out" || fail "$1: the blob differs"
    local hosts=""
    for _ in $(seq 50); do
        hosts=$(in_ns curl -fsS http://127.0.0.1:8003/metrics | awk '$1 == "chunkfly_scheduler_hosts" {print $2}')
        [ "$hosts" = 1 ] && break
        sleep 0.2
    done
    [ "$hosts" = 1 ] || { cat "$T/$1.log" "$T/$2.log"; fail "$2: $hosts hosts announced, expected the peer"; }
    echo "$1: resolved the Service to 127.0.0.1:8002, fetched a blob, announced to $2"
}
mesh_check k8s-peer k8s-sched
# stop_ctr ID: the task and container go (their ports are free again)
stop_ctr() {
    "${CTR[@]}" task kill -s SIGTERM "$1" >/dev/null 2>&1 || true
    for _ in $(seq 50); do "${CTR[@]}" task delete "$1" >/dev/null 2>&1 && break; sleep 0.1; done
    "${CTR[@]}" task delete -f "$1" >/dev/null 2>&1 || true
    "${CTR[@]}" container delete "$1" >/dev/null 2>&1 || true
}

note "the mesh-tls component: per-pod certificates, mutual TLS between the peer and the scheduler"
stop_ctr k8s-peer
stop_ctr k8s-sched
OV=$T/overlay-tls
mkdir -p "$OV"
rel=$(python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$CHUNKFLY_SRC/deploy/k8s" "$OV")
printf 'resources: [%s]\ncomponents: [%s/components/mesh-tls]\n' "$rel" "$rel" >"$OV/kustomization.yaml"
kubectl kustomize "$OV" >"$T/rendered.yaml" || fail "kubectl kustomize with components/mesh-tls"
# the Issuer's CA: deploy/make-certs.sh stands in for cert-manager (k8s_to_ctr.py)
export MESH_CA_DIR=$T/mesh-ca
run_workload Deployment chunkfly-scheduler k8s-tls-sched
run_workload DaemonSet chunkfly-peer k8s-tls-peer
grep -q "mutual TLS" "$T/k8s-tls-peer.log" || { cat "$T/k8s-tls-peer.log"; fail "the peer is not on mutual TLS"; }
mesh_check k8s-tls-peer k8s-tls-sched
in_ns curl -fsS http://127.0.0.1:8003/status | grep -q '"chunkfly-peer-0.chunkfly"' ||
    fail "the scheduler does not know the peer by its certificate's identity chunkfly-peer-0.chunkfly"
# a plaintext client gets no answer on the mesh port
ans=$(in_ns timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/8002; printf "PLAIN HELLO\r\n\r\n" >&3; cat <&3' | head -c 100 | od -An -c | tr -d ' \n' || true)
[ -z "$ans" ] || fail "a plaintext client got an answer on 8002: $ans"
for _ in $(seq 20); do grep -q "plaintext connection refused" "$T/k8s-tls-sched.log" && break; sleep 0.1; done
grep -q "plaintext connection refused" "$T/k8s-tls-sched.log" || { cat "$T/k8s-tls-sched.log"; fail "the scheduler did not refuse plaintext"; }
echo "mesh-tls: the peer chunkfly-peer-0.chunkfly announced over mutual TLS, plaintext refused on 8002"
echo "ok"
