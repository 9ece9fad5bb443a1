#!/usr/bin/env python3
"""Turns one workload of the rendered manifests into what `ctr run` needs (tests/integration/
deploy/image_run.sh runs it the way the kubelet would).

usage: k8s_to_ctr.py RENDERED.yaml KIND NAME WORKDIR NODE_IP

Writes the ConfigMap and Secret volumes the container mounts under WORKDIR/vol-NAME/, makes a
directory WORKDIR/host/PATH for every hostPath (WORKDIR/host/pvc/CLAIM for a
PersistentVolumeClaim), and prints lines:
  ARG word              the container's command then args, $(VAR) expanded as the kubelet does
  MOUNT src dst ro|rw   every volumeMount
  PROBE kind host port path
  PORT n                every containerPort
  USER uid|-            the pod's runAsUser
"""
import base64
import os
import re
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
    else:
        sys.exit(f"volume {m['name']}: unsupported type")
    print("MOUNT", src, m["mountPath"], "ro" if m.get("readOnly") else "rw")
for p in ("readinessProbe", "livenessProbe"):
    g = c[p]["httpGet"]
    print("PROBE", p, g.get("host", "127.0.0.1"), g["port"], g["path"])
for p in c.get("ports", []):
    print("PORT", p["containerPort"])
print("USER", spec.get("securityContext", {}).get("runAsUser", "-"))
