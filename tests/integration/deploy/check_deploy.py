#!/usr/bin/env python3
"""Checks deploy/ against the daemons' own config files (tests/integration/deploy/manifests.sh).

usage: check_deploy.py SRC RENDERED.yaml [BROKEN.yaml REGEX]...

SRC is the source tree; RENDERED.yaml is `kubectl kustomize deploy/k8s` (empty file: only the
raw manifests are checked); each BROKEN.yaml must be refused with an error matching REGEX. Every YAML file under deploy/ must parse; the rendered objects must
use deploy/image/image.env's image, the ports and paths of deploy/config/*.conf, have probes on
/healthz (chunkfly-convertd: /api/v1/health), and run nothing privileged. Prints one line per check group; exits 1 with every
failure listed.
"""
import glob
import os
import re
import sys

import yaml

SRC, RENDERED = sys.argv[1], sys.argv[2]
BAD = list(zip(sys.argv[3::2], sys.argv[4::2]))
errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)
    return cond


def conf(path):
    """deploy/config/*.conf: key = value lines, repeated keys kept in order."""
    out = {}
    for line in open(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        k, _, v = line.partition("=")
        out.setdefault(k.strip(), []).append(v.strip())
    return out


def hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


# 1. every YAML file under deploy/ parses
n = 0
for f in sorted(glob.glob(os.path.join(SRC, "deploy", "**", "*.yaml"), recursive=True)):
    try:
        docs = [d for d in yaml.safe_load_all(open(f)) if d is not None]
        check(docs, f"{f}: empty")
        n += 1
    except yaml.YAMLError as e:
        errors.append(f"{f}: {e}")
print(f"parsed {n} YAML files under deploy/")

image = None
for line in open(os.path.join(SRC, "deploy/image/image.env")):
    if line.startswith("IMAGE="):
        image = line.strip().split("=", 1)[1]
check(image, "deploy/image/image.env: no IMAGE=")
peer = conf(os.path.join(SRC, "deploy/config/peer.conf"))
sched = conf(os.path.join(SRC, "deploy/config/scheduler.conf"))
cvdconf = conf(os.path.join(SRC, "deploy/config/convertd.conf"))
HEALTH = {"chunkfly-convertd": "/api/v1/health"}  # acceld's path; the others: /healthz

def check_rendered(rendered, say=print):
    """Appends to errors what is wrong with the rendered manifests."""
    objs = [d for d in yaml.safe_load_all(open(rendered)) if d] if os.path.getsize(rendered) else []
    if not objs:
        say("no rendered manifests given: kustomize checks skipped")
        return

    by = {}
    for o in objs:
        check(o.get("apiVersion") and o.get("kind") and o.get("metadata", {}).get("name"),
              f"object without apiVersion/kind/name: {o}")
        by[(o["kind"], o["metadata"]["name"])] = o
        if o["kind"] != "Namespace":
            check(o["metadata"].get("namespace") == "chunkfly",
                  f"{o['kind']}/{o['metadata']['name']}: namespace {o['metadata'].get('namespace')}")
        check(not o["metadata"].get("annotations", {}).get("config.kubernetes.io/local-config"),
              f"{o['kind']}/{o['metadata']['name']}: a local-config object was rendered")
    say("rendered: " + ", ".join(f"{k}/{n}" for k, n in sorted(by)))
    ds = by.get(("DaemonSet", "chunkfly-peer"))
    dep = by.get(("Deployment", "chunkfly-scheduler"))
    svc = by.get(("Service", "chunkfly-scheduler"))
    cvd = by.get(("Deployment", "chunkfly-convertd"))
    cvd_svc = by.get(("Service", "chunkfly-convertd"))
    if not (check(ds, "no DaemonSet chunkfly-peer") and check(dep, "no Deployment chunkfly-scheduler")
            and check(svc, "no Service chunkfly-scheduler")
            and check(cvd, "no Deployment chunkfly-convertd")
            and check(cvd_svc, "no Service chunkfly-convertd")):
        return

    # 2. pod templates: structure, image, security
    docs_deploy = open(os.path.join(SRC, "docs/deploy.md")).read()
    # Secrets the operator creates (docs/deploy.md says how), e.g. the private registry CA
    user_secrets = set(re.findall(r"kubectl\s+create\s+secret\s+\w[\w-]*\s+([\w-]+)", docs_deploy))
    for w in (ds, dep, cvd):
        name = f"{w['kind']}/{w['metadata']['name']}"
        health = HEALTH.get(w["metadata"]["name"], "/healthz")
        spec = w["spec"]["template"]["spec"]
        labels = w["spec"]["template"]["metadata"]["labels"]
        sel = w["spec"]["selector"]["matchLabels"]
        check(all(labels.get(k) == v for k, v in sel.items()), f"{name}: selector does not match")
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            cn = f"{name} container {c['name']}"
            check(c.get("image") == image, f"{cn}: image {c.get('image')} != image.env's {image}")
            check(c.get("command", [""])[0] in
                  ("chunkfly-peer", "chunkfly-scheduler", "chunkfly-convertd"),
                  f"{cn}: command {c.get('command')}")
            sc = c.get("securityContext", {})
            check(not sc.get("privileged"), f"{cn}: privileged")
            check(sc.get("allowPrivilegeEscalation") is False, f"{cn}: allowPrivilegeEscalation")
            check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{cn}: capabilities not dropped")
            check(not sc.get("capabilities", {}).get("add"), f"{cn}: adds capabilities")
            check(sc.get("readOnlyRootFilesystem") is True, f"{cn}: writable root file system")
            for p in ("livenessProbe", "readinessProbe"):
                g = c.get(p, {}).get("httpGet")
                check(g and g.get("path") == health, f"{cn}: {p} is not an httpGet of {health}")
            r = c.get("resources", {})
            check(r.get("requests", {}).get("memory") and r.get("limits", {}).get("memory"),
                  f"{cn}: memory request/limit missing")
            for m in c.get("volumeMounts", []):
                check(m["name"] in vols, f"{cn}: mount of unknown volume {m['name']}")
            for v in vols.values():
                for kind, key in (("configMap", "name"), ("secret", "secretName")):
                    if kind in v:
                        ref = v[kind][key]
                        k = "ConfigMap" if kind == "configMap" else "Secret"
                        check((k, ref) in by or v[kind].get("optional") or
                              (k == "Secret" and ref in user_secrets),
                              f"{name}: volume {v['name']} refers to missing {k} {ref}")
        pod_sc = spec.get("securityContext", {})
        if pod_sc.get("runAsUser", 1) == 0 or not pod_sc.get("runAsNonRoot"):
            # root is allowed only where docs/deploy.md says why
            why = re.search(r"^### Why root\n(.*?)(?=^#)", docs_deploy, re.S | re.M)
            check(why and f"`{w['metadata']['name']}`" in why.group(1),
                  f"{name}: runs as root and docs/deploy.md (### Why root) does not say why")
        if spec.get("hostNetwork"):
            check(w["metadata"]["name"] in docs_deploy, f"{name}: hostNetwork not documented")
            check(spec.get("dnsPolicy") == "ClusterFirstWithHostNet", f"{name}: dnsPolicy")
    say("pod templates: image, security, probes, volumes")

    # 3. the peer: ports and paths of peer.conf
    pc = ds["spec"]["template"]["spec"]["containers"][0]
    pspec = ds["spec"]["template"]["spec"]
    check(pspec.get("hostNetwork") is True, "peer: not on the host network")
    _, listen_port = hostport(peer["listen"][0])
    http_host, http_port = hostport(peer["http"][0])
    mirror_host, mirror_port = hostport(peer["mirror_listen"][0])
    ports = {p["containerPort"]: p for p in pc["ports"]}
    for what, port in (("listen", listen_port), ("http", http_port), ("mirror_listen", mirror_port)):
        check(port in ports and ports[port].get("hostPort") in (None, port),
              f"peer: {what} port {port} of peer.conf not declared as a host port")
    args = pc.get("args", [])
    check("--config" in args and args[args.index("--config") + 1] == "/etc/chunkfly/peer.conf",
          f"peer: args {args} do not load /etc/chunkfly/peer.conf")
    check(f"advertise=$(NODE_IP):{listen_port}" in args, f"peer: advertise is not NODE_IP:{listen_port}")
    check(any(e["name"] == "NODE_IP" and e["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
              for e in pc.get("env", [])), "peer: NODE_IP is not the host IP")
    for p in ("livenessProbe", "readinessProbe"):
        g = pc[p]["httpGet"]
        check(g.get("port") == http_port and g.get("host", "") == http_host,
              f"peer {p}: {g} is not peer.conf's http {http_host}:{http_port}")
    mounts = {m["mountPath"]: m["name"] for m in pc["volumeMounts"]}
    vols = {v["name"]: v for v in pspec["volumes"]}
    for key, path in (("cache_dir", peer["cache_dir"][0]),
                      ("api_socket dir", os.path.dirname(peer["api_socket"][0]))):
        v = vols.get(mounts.get(path, ""), {})
        check(v.get("hostPath", {}).get("path") == path,
              f"peer: {key} {path} is not a hostPath mounted at the same path")
    check(mounts.get("/etc/chunkfly") and "configMap" in vols[mounts["/etc/chunkfly"]],
          "peer: /etc/chunkfly is not the ConfigMap")
    cm = by.get(("ConfigMap", vols[mounts["/etc/chunkfly"]]["configMap"]["name"]))
    check(cm and cm["data"].get("peer.conf") == open(os.path.join(SRC, "deploy/config/peer.conf")).read(),
          "peer: its ConfigMap is not deploy/config/peer.conf")
    dc = [a for a in args if a.startswith("docker_config=")]
    if dc:
        d = os.path.dirname(dc[0].split("=", 1)[1])
        check(d in mounts and "secret" in vols[mounts[d]], f"peer: docker_config dir {d} is not a Secret")
    # containerd's hosts.toml sends pulls to the peer's mirror
    hosts = open(os.path.join(SRC, "deploy/containerd/hosts.toml")).read()
    check(f'[host."http://{mirror_host}:{mirror_port}"]' in hosts,
          "deploy/containerd/hosts.toml does not point at peer.conf's mirror_listen")
    say(f"peer: listen {listen_port}, http {http_host}:{http_port}, mirror {mirror_port}, paths")

    # 4. the scheduler: ports of scheduler.conf, the headless Service, the peers' scheduler lines
    sc_ = dep["spec"]["template"]["spec"]["containers"][0]
    _, s_listen = hostport(sched["listen"][0])
    s_http_host, s_http = hostport(sched["http"][0])
    check(s_http_host in ("0.0.0.0", "::", ""), "scheduler.conf: http must listen beyond loopback for probes")
    sports = {p["containerPort"] for p in sc_["ports"]}
    check({s_listen, s_http} <= sports, f"scheduler: ports {sports} != scheduler.conf {s_listen}, {s_http}")
    check(sc_["command"][1:3] == ["--config", "/etc/chunkfly/scheduler.conf"], "scheduler: --config")
    for p in ("livenessProbe", "readinessProbe"):
        check(sc_[p]["httpGet"]["port"] == s_http, f"scheduler {p}: not port {s_http}")
    smounts = {m["mountPath"]: m["name"] for m in sc_["volumeMounts"]}
    svols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    scm = by.get(("ConfigMap", svols[smounts["/etc/chunkfly"]]["configMap"]["name"]))
    check(scm and scm["data"].get("scheduler.conf") ==
          open(os.path.join(SRC, "deploy/config/scheduler.conf")).read(),
          "scheduler: its ConfigMap is not deploy/config/scheduler.conf")
    check(svc["spec"].get("clusterIP") == "None", "scheduler Service is not headless")
    check(all(dep["spec"]["template"]["metadata"]["labels"].get(k) == v
              for k, v in svc["spec"]["selector"].items()),
          "scheduler Service selector does not match the pods")
    check(any(p["port"] == s_listen for p in svc["spec"]["ports"]), "scheduler Service: no mesh port")
    # the peers learn every scheduler from the headless Service: their `scheduler` (in the
    # rendered ConfigMap) is its DNS name and mesh port, which the host-network pods resolve
    # through the cluster DNS (dnsPolicy, checked above for every host-network pod)
    svc_name, svc_ns = svc["metadata"]["name"], svc["metadata"]["namespace"]
    names = {f"{svc_name}.{svc_ns}.svc", f"{svc_name}.{svc_ns}.svc.cluster.local"}
    rendered_peer = {}
    for line in (cm["data"].get("peer.conf", "") if cm else "").splitlines():
        k, _, v = line.strip().partition("=")
        if k.strip() and not k.startswith("#"):
            rendered_peer.setdefault(k.strip(), []).append(v.strip())
    lines = rendered_peer.get("scheduler", [])
    check(lines, "peer.conf: no scheduler line")
    for s in lines:
        host, _, port = s.rpartition(":")
        check(host in names and port == str(s_listen),
              f"peer.conf scheduler {s}: not the headless Service {sorted(names)[0]}:{s_listen}")
    check(pspec.get("dnsPolicy") in ("ClusterFirst", "ClusterFirstWithHostNet") and
          (not pspec.get("hostNetwork") or pspec.get("dnsPolicy") == "ClusterFirstWithHostNet"),
          "peer: its dnsPolicy does not resolve the Service's name")
    say(f"scheduler: listen {s_listen}, http {s_http}, headless Service")

    # 5. the conversion service: port and paths of convertd.conf, its Service, one queue writer
    cc = cvd["spec"]["template"]["spec"]["containers"][0]
    cspec = cvd["spec"]["template"]["spec"]
    c_host, c_port = hostport(cvdconf["listen"][0])
    check(c_host in ("0.0.0.0", "::", ""), "convertd.conf: listen must be reachable beyond loopback")
    cmd = cc["command"]
    check(cmd[1:3] == ["--config", "/etc/chunkfly/convertd.conf"], f"convertd: command {cmd}")
    check(any(p["containerPort"] == c_port for p in cc["ports"]),
          f"convertd: port {c_port} of convertd.conf not declared")
    for p in ("livenessProbe", "readinessProbe"):
        check(cc[p]["httpGet"]["port"] == c_port, f"convertd {p}: not port {c_port}")
    cmounts = {m["mountPath"]: m["name"] for m in cc["volumeMounts"]}
    cvols = {v["name"]: v for v in cspec["volumes"]}
    ccm = by.get(("ConfigMap", cvols[cmounts["/etc/chunkfly"]]["configMap"]["name"]))
    check(ccm and ccm["data"].get("convertd.conf") ==
          open(os.path.join(SRC, "deploy/config/convertd.conf")).read(),
          "convertd: its ConfigMap is not deploy/config/convertd.conf")
    work = cvdconf["work_dir"][0]
    wv = cvols.get(cmounts.get(work, ""), {})
    claim = wv.get("persistentVolumeClaim", {}).get("claimName")
    check(claim and ("PersistentVolumeClaim", claim) in by,
          f"convertd: work_dir {work} is not a PersistentVolumeClaim mounted at the same path")
    check(cspec.get("securityContext", {}).get("fsGroup") == cspec.get("securityContext", {}).get("runAsGroup"),
          "convertd: fsGroup != runAsGroup (the volume would not be writable)")
    for flag in ("--auth-header-file", "--docker-config"):
        if flag in cmd:
            d = os.path.dirname(cmd[cmd.index(flag) + 1])
            check(d in cmounts and "secret" in cvols[cmounts[d]],
                  f"convertd: {flag} dir {d} is not a Secret")
    check("--auth-header-file" in cmd or "auth_header_file" in cvdconf or "auth_header" in cvdconf,
          "convertd: no Authorization secret: every POST would be refused from other hosts")
    check(cvd["spec"].get("replicas") == 1 and cvd["spec"].get("strategy", {}).get("type") == "Recreate",
          "convertd: the LMDB queue takes one writer: replicas 1, strategy Recreate")
    check(all(cvd["spec"]["template"]["metadata"]["labels"].get(k) == v
              for k, v in cvd_svc["spec"]["selector"].items()),
          "convertd Service selector does not match the pods")
    check(any(p["targetPort"] == c_port for p in cvd_svc["spec"]["ports"]),
          f"convertd Service: no port {c_port}")
    say(f"convertd: listen {c_port}, work_dir {work} on a claim, Service, probes")

    # 6. the conversion job: an Indexed Job whose pods take shard $(JOB_COMPLETION_INDEX)/N
    job = by.get(("Job", "chunkfly-convert-all"))
    if not check(job, "no Job chunkfly-convert-all"):
        return
    js = job["spec"]
    n = js.get("completions")
    check(js.get("completionMode") == "Indexed", "convert job: completionMode is not Indexed")
    check(isinstance(n, int) and n >= 1, f"convert job: completions {n}")
    check(1 <= js.get("parallelism", 1) <= (n or 1), "convert job: parallelism above completions")
    jspec = js["template"]["spec"]
    check(jspec.get("restartPolicy") in ("Never", "OnFailure"), "convert job: restartPolicy")
    psc = jspec.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0,
          "convert job: runs as root")
    check(len(jspec["containers"]) == 1, "convert job: one container")
    jc = jspec["containers"][0]
    cmd = jc.get("command", [])
    check(jc.get("image") == image, f"convert job: image {jc.get('image')} != image.env's {image}")
    check(cmd[:3] == ["chunkfly", "convert", "--all"] and len(cmd) > 3,
          f"convert job: command {cmd} is not chunkfly convert --all REGISTRY")

    def opt(name):
        return cmd[cmd.index(name) + 1] if name in cmd[:-1] else None

    check(opt("--shard") == f"$(JOB_COMPLETION_INDEX)/{n}",
          f"convert job: --shard {opt('--shard')} is not $(JOB_COMPLETION_INDEX)/{n} (completions)")
    env = {e["name"]: e for e in jc.get("env", [])}
    ix = env.get("JOB_COMPLETION_INDEX")
    check(not ix or ix.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") ==
          "metadata.annotations['batch.kubernetes.io/job-completion-index']",
          "convert job: JOB_COMPLETION_INDEX is not the completion index annotation")
    for ref in re.findall(r"\$\((\w+)\)", " ".join(cmd)):
        check(ref in env or ref == "JOB_COMPLETION_INDEX",
              f"convert job: $({ref}) in the command is not an env variable")
    sc = jc.get("securityContext", {})
    check(sc.get("allowPrivilegeEscalation") is False and not sc.get("privileged"),
          "convert job: privileged")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], "convert job: capabilities not dropped")
    check(sc.get("readOnlyRootFilesystem") is True, "convert job: writable root file system")
    check(jc.get("resources", {}).get("limits", {}).get("memory"), "convert job: no memory limit")
    jm = {m["mountPath"]: m["name"] for m in jc.get("volumeMounts", [])}
    jv = {v["name"]: v for v in jspec.get("volumes", [])}
    check("emptyDir" in jv.get(jm.get(opt("--work-dir"), ""), {}),
          f"convert job: --work-dir {opt('--work-dir')} is not a mounted emptyDir")
    dcfg = opt("--docker-config") or ""
    sv = jv.get(jm.get(os.path.dirname(dcfg), ""), {}).get("secret", {})
    sec = by.get(("Secret", sv.get("secretName")))
    check(sec and sec.get("type") == "kubernetes.io/dockerconfigjson" and
          {"key": ".dockerconfigjson", "path": os.path.basename(dcfg)} in sv.get("items", []),
          f"convert job: --docker-config {dcfg} is not the .dockerconfigjson of a registry Secret")
    say(f"convert job: Indexed, {n} shards, non-root, credentials {sv.get('secretName')}")


check_rendered(RENDERED)
if errors:
    print("\n".join("FAIL: " + e for e in errors), file=sys.stderr)
    sys.exit(1)
# broken copies (--bad FILE REGEX pairs after the two arguments): each must be refused with a
# message matching REGEX, so a check that no longer bites is noticed
for path, regex in BAD:
    errors = []
    check_rendered(path, say=lambda *a: None)
    if not errors:
        print(f"FAIL: {path}: accepted, expected an error matching {regex!r}", file=sys.stderr)
        sys.exit(1)
    if not any(re.search(regex, e) for e in errors):
        print(f"FAIL: {path}: errors {errors} do not match {regex!r}", file=sys.stderr)
        sys.exit(1)
    print(f"refused {os.path.basename(path)}: {next(e for e in errors if re.search(regex, e))}")
print("ok")
