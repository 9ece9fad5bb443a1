#!/bin/bash
# deploy/k8s and deploy/config: every YAML parses, `kubectl kustomize` renders the base and the
# registry-ca component, check_deploy.py finds the image of deploy/image/image.env, the ports and
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
