#!/bin/bash
# deploy/k8s and deploy/config: every YAML parses, `kubectl kustomize` renders the base, the
# registry-ca component and the mesh-tls component (its certificate files = the tls_* keys),
# check_deploy.py finds the image of deploy/image/image.env, the ports and
# paths of deploy/config/*.conf, probes on /healthz (convertd: /api/v1/health), nothing privileged (and root only where
# docs/deploy.md says why); broken copies of the rendered manifests are refused (the checker
# bites). `kubectl apply --dry-run=client -k` needs an API server even on the client side (REST
# mapping, OpenAPI): run when one answers, skipped visibly otherwise.
. "$(dirname "$0")/../../lib/testlib.sh"

python3 -c 'import yaml' 2>/dev/null || skip "python3-yaml not installed (.ci/install-deps)"
CHECK=$CHUNKFLY_SRC/tests/integration/deploy/check_deploy.py
K8S=$CHUNKFLY_SRC/deploy/k8s

if ! command -v kubectl >/dev/null; then
    note "kubectl not installed: only the YAML files and the deploy/config checks"
    : >"$T/empty.yaml"
    python3 "$CHECK" "$CHUNKFLY_SRC" "$T/empty.yaml" || fail "check_deploy.py"
    skip "kubectl not installed: kustomize rendering and manifest checks not run"
fi

note "kubectl kustomize deploy/k8s"
kubectl kustomize "$K8S" >"$T/rendered.yaml" 2>"$T/kustomize.err" ||
    { cat "$T/kustomize.err"; fail "kubectl kustomize deploy/k8s"; }
python3 "$CHECK" "$CHUNKFLY_SRC" "$T/rendered.yaml" || fail "check_deploy.py on deploy/k8s"

note "the registry-ca component"
# an overlay beside the base (kustomize wants relative paths)
OV=$CHUNKFLY_BUILD/deploy-test-overlay.$$
mkdir -p "$OV"
trap 'rm -rf "$OV"; cf_cleanup' EXIT
rel=$(python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$K8S" "$OV")
printf 'resources: [%s]\ncomponents: [%s/components/registry-ca]\n' "$rel" "$rel" \
    >"$OV/kustomization.yaml"
kubectl kustomize "$OV" >"$T/with-ca.yaml" 2>"$T/kustomize.err" ||
    { cat "$T/kustomize.err"; fail "kubectl kustomize with components/registry-ca"; }
python3 "$CHECK" "$CHUNKFLY_SRC" "$T/with-ca.yaml" >/dev/null || fail "check_deploy.py with registry-ca"
python3 - "$T/with-ca.yaml" <<'PY' || fail "registry-ca: the CA bundle is not mounted over the image's"
import sys, yaml
ds = [o for o in yaml.safe_load_all(open(sys.argv[1])) if o and o["kind"] == "DaemonSet"][0]
spec = ds["spec"]["template"]["spec"]
m = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "registry-ca"][0]
assert m["mountPath"] == "/etc/ssl/certs/ca-certificates.crt" and m["subPath"] == "ca-certificates.crt"
v = [v for v in spec["volumes"] if v["name"] == "registry-ca"][0]
assert v["secret"]["secretName"] == "chunkfly-registry-ca"
PY

note "the mesh-tls component"
printf 'resources: [%s]\ncomponents: [%s/components/mesh-tls]\n' "$rel" "$rel" >"$OV/kustomization.yaml"
kubectl kustomize "$OV" >"$T/with-tls.yaml" 2>"$T/kustomize.err" ||
    { cat "$T/kustomize.err"; fail "kubectl kustomize with components/mesh-tls"; }
python3 "$CHECK" "$CHUNKFLY_SRC" "$T/with-tls.yaml" >/dev/null || fail "check_deploy.py with mesh-tls"
python3 - "$T/with-tls.yaml" <<'PY' || fail "mesh-tls: certificates and config keys disagree"
import os, sys, yaml
objs = [o for o in yaml.safe_load_all(open(sys.argv[1])) if o]
for kind, name in (("DaemonSet", "chunkfly-peer"), ("Deployment", "chunkfly-scheduler")):
    w = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name][0]
    spec = w["spec"]["template"]["spec"]
    c = spec["containers"][0]
    words = c.get("command", []) + c.get("args", [])
    keys = dict(words[i + 1].split("=", 1) for i, x in enumerate(words[:-1]) if x == "--set")
    assert all(k in keys for k in ("tls_cert", "tls_key", "tls_ca")), f"{name}: tls_* not set: {words}"
    vol = [v for v in spec["volumes"] if v["name"] == "mesh-tls"][0]["csi"]
    at = vol["volumeAttributes"]
    assert vol["driver"] == "csi.cert-manager.io" and vol.get("readOnly") is True, name
    assert at["csi.cert-manager.io/issuer-name"] and at["csi.cert-manager.io/issuer-kind"] in ("Issuer", "ClusterIssuer")
    # identity = first DNS name: one per pod
    first = at["csi.cert-manager.io/dns-names"].split(",")[0]
    assert "${POD_NAME}" in first, f"{name}: identity {first} is not per pod"
    usages = {u.strip() for u in at["csi.cert-manager.io/key-usages"].split(",")}
    assert {"server auth", "client auth"} <= usages, f"{name}: usages {usages}"
    mount = [m for m in c["volumeMounts"] if m["name"] == "mesh-tls"][0]
    assert mount.get("readOnly") is True
    for key, attr in (("tls_cert", "certificate-file"), ("tls_key", "privatekey-file"),
                      ("tls_ca", "ca-file")):
        want = os.path.join(mount["mountPath"], at["csi.cert-manager.io/" + attr])
        assert keys[key] == want, f"{name}: {key}={keys[key]}, the volume has {want}"
    uid = spec.get("securityContext", {}).get("runAsUser", 0)
    assert uid == 0 or at.get("csi.cert-manager.io/fs-group") == str(spec["securityContext"].get("runAsGroup", uid)), \
        f"{name}: runs as {uid}, the key is not readable by its group"
    print(f"mesh-tls {kind}/{name}: {keys['tls_cert']} {keys['tls_key']} {keys['tls_ca']}, identity {first}")
PY

note "broken copies are refused"
# bad NAME SED_EXPR MESSAGE_RE: a copy of the rendered file changed by SED_EXPR, which the checker
# must refuse with MESSAGE_RE (all checked by one python run below)
BAD=()
bad() {
    sed -e "$2" "$T/rendered.yaml" >"$T/bad-$1.yaml"
    cmp -s "$T/rendered.yaml" "$T/bad-$1.yaml" && fail "bad $1: the sed expression changed nothing"
    BAD+=("$T/bad-$1.yaml" "$3")
}
bad image 's|image: registry.example.com/chunkfly/chunkfly:.*|image: other/chunkfly:1|' "image .* != image.env"
bad privileged 's|allowPrivilegeEscalation: false|privileged: true|' "privileged"
bad probe-port '0,/port: 4101/s//port: 4102/' "Probe.*4101"
bad healthz '0,/path: \/healthz/s//path: \/metrics/' "not an httpGet of /healthz"
bad cache-path 's|path: /var/cache/chunkfly|path: /var/lib/chunkfly|' "cache_dir"
bad headless 's|clusterIP: None|clusterIP: 10.96.0.9|' "not headless"
bad caps 's|- ALL|- NET_RAW|' "capabilities not dropped"
bad root-sched 's|runAsNonRoot: true|runAsNonRoot: false|' "Deployment/chunkfly-scheduler: runs as root"
bad cvd-health 's|path: /api/v1/health|path: /healthz|' "not an httpGet of /api/v1/health"
bad cvd-replicas 's|replicas: 1$|replicas: 2|' "convertd: the LMDB queue takes one writer"
bad cvd-work 's|mountPath: /var/lib/chunkfly/convertd|mountPath: /var/lib/convertd|' "work_dir .* is not a PersistentVolumeClaim"
bad job-shard 's|\$(JOB_COMPLETION_INDEX)/4|$(JOB_COMPLETION_INDEX)/3|' "convert job: --shard"
bad sched-name 's|scheduler = chunkfly-scheduler.chunkfly.svc:8002|scheduler = 10.0.0.5:8002|' "not the headless Service"
bad dns-policy 's|dnsPolicy: ClusterFirstWithHostNet|dnsPolicy: Default|' "dnsPolicy"
bad job-indexed 's|completionMode: Indexed|completionMode: NonIndexed|' "not Indexed"
python3 "$CHECK" "$CHUNKFLY_SRC" "$T/rendered.yaml" "${BAD[@]}" >"$T/bad.out" 2>&1 ||
    { cat "$T/bad.out"; fail "a broken copy was accepted"; }
grep '^refused' "$T/bad.out"

note "kubectl apply --dry-run=client -k"
if kubectl version --request-timeout=3s >/dev/null 2>&1; then
    kubectl apply --dry-run=client -k "$K8S" >"$T/apply.out" 2>&1 ||
        { cat "$T/apply.out"; fail "kubectl apply --dry-run=client -k deploy/k8s"; }
else
    echo "SKIPPED PART: no Kubernetes API server answers; kubectl apply --dry-run=client needs one" \
        "(REST mapping and OpenAPI schemas): rendering + check_deploy.py above are the offline check"
fi
echo "ok"
