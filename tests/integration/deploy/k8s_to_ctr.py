#!/usr/bin/env python3
"""Turns one workload of the rendered manifests into what `ctr run` needs (tests/integration/
deploy/image_run.sh runs it the way the kubelet would).

usage: k8s_to_ctr.py RENDERED.yaml KIND NAME WORKDIR NODE_IP

Writes the ConfigMap and Secret volumes the container mounts under WORKDIR/vol-NAME/, makes a
directory WORKDIR/host/PATH for every hostPath (WORKDIR/host/pvc/CLAIM for a
PersistentVolumeClaim). A cert-manager CSI volume (csi.cert-manager.io) becomes what the driver
would write: a certificate for its dns-names (${POD_NAME} = NAME-0, ${POD_NAMESPACE} = the
workload's namespace) made by deploy/make-certs.sh with the CA in $MESH_CA_DIR (the Issuer's),
under the attribute's file names. The cluster DNS is a WORKDIR/hosts mounted at /etc/hosts:
every headless Service's name resolves to NODE_IP (where the tests run every pod), when the
pod's dnsPolicy asks the cluster DNS. Prints lines:
  ARG word              the container's command then args, $(VAR) expanded as the kubelet does
  MOUNT src dst ro|rw   every volumeMount
  PROBE kind host port path
  PORT n                every containerPort
  USER uid|-            the pod's runAsUser
"""
import base64
import os
import re
import shutil
import subprocess
import sys

import yaml

rendered, kind, name, work, node_ip = sys.argv[1:6]
objs = [o for o in yaml.safe_load_all(open(rendered)) if o]
w = next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)
spec = w["spec"]["template"]["spec"]
c = spec["containers"][0]
env = {}
for e in c.get("env", []):
    if "value" in e:
        env[e["name"]] = e["value"]
    elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.hostIP":
        env[e["name"]] = node_ip
    else:
        sys.exit(f"env {e['name']}: unsupported source")
for word in c.get("command", []) + c.get("args", []):
    print("ARG", re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), word))

ns = w["metadata"].get("namespace", "default")
pod = {"POD_NAME": f"{name}-0", "POD_NAMESPACE": ns}
hosts = ["127.0.0.1 localhost"]
policy = spec.get("dnsPolicy", "ClusterFirst")
if policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not spec.get("hostNetwork")):
    for o in objs:
        if o["kind"] == "Service" and o["spec"].get("clusterIP") == "None":
            n = f"{o['metadata']['name']}.{o['metadata'].get('namespace', 'default')}"
            hosts.append(f"{node_ip} {n}.svc.cluster.local {n}.svc")
os.makedirs(work, exist_ok=True)
with open(os.path.join(work, "hosts"), "w") as f:
    f.write("\n".join(hosts) + "\n")
print("MOUNT", os.path.join(work, "hosts"), "/etc/hosts", "ro")

vols = {v["name"]: v for v in spec.get("volumes", [])}
for m in c.get("volumeMounts", []):
    v = vols[m["name"]]
    if "configMap" in v or "secret" in v:
        ref_kind, ref = (("ConfigMap", v["configMap"]["name"]) if "configMap" in v
                         else ("Secret", v["secret"]["secretName"]))
        o = next(o for o in objs if o["kind"] == ref_kind and o["metadata"]["name"] == ref)
        files = dict(o.get("data", {}))
        if ref_kind == "Secret":
            files = {k: base64.b64decode(x).decode() for k, x in files.items()}
            files.update(o.get("stringData", {}))
        src = os.path.join(work, "vol-" + m["name"])
        os.makedirs(src, exist_ok=True)
        for k, x in files.items():
            with open(os.path.join(src, k), "w") as f:
                f.write(x)
    elif "hostPath" in v:
        src = os.path.join(work, "host", v["hostPath"]["path"].lstrip("/"))
        os.makedirs(src, exist_ok=True)
    elif "persistentVolumeClaim" in v:
        # a claim's volume: an empty directory of its own, as a fresh PersistentVolume is
        src = os.path.join(work, "host", "pvc", v["persistentVolumeClaim"]["claimName"])
        os.makedirs(src, exist_ok=True)
    elif v.get("csi", {}).get("driver") == "csi.cert-manager.io":
        at = v["csi"]["volumeAttributes"]
        ident = re.sub(r"\$\{(\w+)\}", lambda x: pod[x.group(1)],
                       at["csi.cert-manager.io/dns-names"].split(",")[0])
        ca = os.environ.get("MESH_CA_DIR") or sys.exit("a cert-manager volume needs MESH_CA_DIR")
        here = os.path.dirname(os.path.abspath(__file__))
        subprocess.run([os.path.join(here, "../../../deploy/make-certs.sh"), ca, ident],
                       check=True, stdout=subprocess.DEVNULL)
        src = os.path.join(work, "vol-" + m["name"])
        os.makedirs(src, exist_ok=True)
        for attr, default, from_ in (("certificate-file", "tls.crt", f"{ident}.crt"),
                                     ("privatekey-file", "tls.key", f"{ident}.key"),
                                     ("ca-file", "ca.crt", "ca.crt")):
            shutil.copy(os.path.join(ca, from_),
                        os.path.join(src, at.get("csi.cert-manager.io/" + attr, default)))
    else:
        sys.exit(f"volume {m['name']}: unsupported type")
    print("MOUNT", src, m["mountPath"], "ro" if m.get("readOnly") else "rw")
for p in ("readinessProbe", "livenessProbe"):
    g = c[p]["httpGet"]
    print("PROBE", p, g.get("host", "127.0.0.1"), g["port"], g["path"])
for p in c.get("ports", []):
    print("PORT", p["containerPort"])
print("USER", spec.get("securityContext", {}).get("runAsUser", "-"))
