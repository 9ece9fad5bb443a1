#!/usr/bin/env python3
"""Where the time goes in a bench_p2p.sh run (issue 14): per link and per interval.

  link_sampler.py sample SPEC CSV [INTERVAL]
      One process for the whole run. Every INTERVAL seconds (default 0.5), for every line of
      SPEC ("label idx netns pid rate_bps metrics_host:port|-"):
        * the link's byte counters, read from /proc/PID/net/dev: the namespace as PID sees it,
          no process started, nothing entered. tx = eth0 (after its egress tbf), rx = ifb0
          (the ingress tbf's output; eth0's rx would count bytes the tbf then drops);
        * PID's CPU time (/proc/PID/stat, user + system);
        * the peer's gauges from /metrics: the socket is created inside the node's namespace
          (setns on /run/netns/NETNS) and connects to the node's own address, so the request
          stays on that namespace's lo: not shaped, not counted on the link.
      Rows: t (Unix time, s), label, idx, rx_bps, tx_bps, rx_util, tx_util (fraction of the
      shaped rate), waiting_parent, waiting_origin, idle_slots, missing, req_parents,
      req_origin, waiting_origin_mine, cpu (cores). Stops on SIGTERM.
  link_sampler.py report CSV[.gz] RUNS OUTDIR T0_US
      RUNS: "label start_s end_s group" per node (s from T0, the common start; rows' t are
      shifted to it). Prints the per-node summary (mean
      uplink/downlink utilisation while the node downloaded, seconds its downlink was idle
      while incomplete), totals and CPU, and writes OUTDIR/links.dat and OUTDIR/totals.dat
      for tests/bench/p2p/links.gp.
Started by bench_p2p.sh inside its hub namespace (no routes there): the only sockets it opens
are made inside a node's namespace.
"""
import ctypes
import gzip
import os
import signal
import socket
import sys
import time

CLONE_NEWNET = 0x40000000
GAUGES = {
    "chunkfly_peer_pieces_waiting_parent": "waiting_parent",
    "chunkfly_peer_pieces_waiting_origin": "waiting_origin",
    "chunkfly_peer_upload_slots_idle": "idle_slots",
    "chunkfly_peer_pieces_missing": "missing",
    "chunkfly_peer_piece_requests_parents": "req_parents",
    "chunkfly_peer_piece_requests_origin": "req_origin",
    "chunkfly_peer_pieces_waiting_origin_mine": "waiting_origin_mine",
}
COLS = ["t", "label", "idx", "rx_bps", "tx_bps", "rx_util", "tx_util", "waiting_parent",
        "waiting_origin", "idle_slots", "missing", "req_parents", "req_origin",
        "waiting_origin_mine", "cpu"]
IDLE_UTIL = 0.05  # a downlink below 5 % of its rate counts as idle
TICK = os.sysconf("SC_CLK_TCK")


def net_bytes(pid):
    """(rx, tx) of the link in PID's namespace: ifb0's rx (shaped ingress), eth0's tx."""
    rx = tx = erx = None
    with open(f"/proc/{pid}/net/dev") as f:
        for line in f.readlines()[2:]:
            name, data = line.split(":", 1)
            v = data.split()
            name = name.strip()
            if name == "eth0":
                erx, tx = int(v[0]), int(v[8])
            elif name == "ifb0":
                rx = int(v[0])
    return (rx if rx is not None else erx), tx


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / TICK  # utime, stime (fields 14, 15)


def metrics(nsfd, hostport, libc):
    if libc.setns(nsfd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")
    host, port = hostport.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        s.connect((host, int(port)))
        s.sendall(f"GET /metrics HTTP/1.0\r\nHost: {hostport}\r\n\r\n".encode())
        buf = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            buf += c
    out = {}
    for line in buf.decode("ascii", "replace").splitlines():
        p = line.split()
        if len(p) == 2 and p[0] in GAUGES:
            out[GAUGES[p[0]]] = p[1]
    return out


def sample(spec, csv, interval):
    libc = ctypes.CDLL(None, use_errno=True)
    ents = []
    with open(spec) as f:
        for line in f:
            p = line.split()
            if len(p) != 6:
                continue
            label, idx, ns, pid, rate, mh = p
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY) if mh != "-" else -1
            ents.append({"label": label, "idx": idx, "pid": int(pid), "rate": float(rate),
                         "mh": mh, "fd": fd, "prev": None})
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    out = open(csv, "w")
    out.write(",".join(COLS) + "\n")
    nxt = time.time()
    while not stop:
        t_round = time.time()
        rows = []
        for e in ents:
            try:
                now = time.time()
                rx, tx = net_bytes(e["pid"])
                cpu = cpu_s(e["pid"])
            except (OSError, ValueError, IndexError):
                continue  # the process is gone
            g = {}
            if e["fd"] >= 0:
                try:
                    g = metrics(e["fd"], e["mh"], libc)
                except OSError:
                    g = {}
            prev, e["prev"] = e["prev"], (now, rx, tx, cpu)
            if prev is None or now <= prev[0]:
                continue
            dt = now - prev[0]
            rxb, txb = (rx - prev[1]) * 8 / dt, (tx - prev[2]) * 8 / dt
            row = [f"{t_round:.3f}", e["label"], e["idx"], f"{rxb:.0f}", f"{txb:.0f}",
                   f"{rxb / e['rate']:.4f}", f"{txb / e['rate']:.4f}"]
            row += [g.get(k, "") for k in COLS[7:14]]
            row.append(f"{(cpu - prev[3]) / dt:.3f}")
            rows.append(",".join(row))
        if rows:
            out.write("\n".join(rows) + "\n")
            out.flush()
        nxt += interval
        d = nxt - time.time()
        if d > 0:
            time.sleep(d)
        else:
            nxt = time.time()  # fell behind (busy machine): skip, do not burst
    out.close()


def fnum(s, default=0.0):
    try:
        return float(s)
    except ValueError:
        return default


def report(csv, runs, outdir, t0_us):
    win = {}
    with open(runs) as f:
        for line in f:
            p = line.split()
            if len(p) >= 3 and not p[0].startswith("#"):
                win[p[0]] = (float(p[1]), float(p[2]), p[3] if len(p) > 3 else "")
    rows = []
    with (gzip.open(csv, "rt") if csv.endswith(".gz") else open(csv)) as f:
        hdr = f.readline().strip().split(",")
        for line in f:
            v = line.rstrip("\n").split(",")
            if len(v) == len(hdr):
                r = dict(zip(hdr, v))
                r["t"] = "%.2f" % (float(r["t"]) - t0_us / 1e6)
                rows.append(r)
    if not rows:
        print("  links: no samples")
        return
    ts = sorted({float(r["t"]) for r in rows})
    dt = (ts[-1] - ts[0]) / (len(ts) - 1) if len(ts) > 1 else 0.5
    last = max(e for _, e, _ in win.values()) if win else ts[-1]
    first = min(s for s, _, _ in win.values()) if win else 0.0
    # the heat map (origin row 0, nodes 1..N) and the totals per round
    with open(os.path.join(outdir, "links.dat"), "w") as f:
        f.write("# t idx tx_util rx_util\n")
        for r in rows:
            if int(r["idx"]) >= 0:
                f.write(f"{r['t']} {r['idx']} {r['tx_util']} {r['rx_util']}\n")
    by_t = {}
    for r in rows:
        by_t.setdefault(float(r["t"]), []).append(r)
    with open(os.path.join(outdir, "totals.dat"), "w") as f:
        f.write("# t waiting_parent waiting_origin req_parents req_origin idle_slots "
                "incomplete up_util down_util_incomplete peer_cpu waiting_origin_mine\n")
        for t in sorted(by_t):
            rs = by_t[t]
            nodes = [r for r in rs if r["label"].startswith("n")]
            inc = [r for r in nodes if r["label"] in win and win[r["label"]][0] <= t <= win[r["label"]][1]]
            up = [r for r in rs if int(r["idx"]) >= 0]
            s = lambda k, rr=nodes: sum(fnum(r[k]) for r in rr)
            f.write("%.2f %d %d %d %d %d %d %.4f %.4f %.3f %d\n" % (
                t, s("waiting_parent"), s("waiting_origin"), s("req_parents"), s("req_origin"),
                s("idle_slots"), len(inc),
                (s("tx_util", up) / len(up)) if up else 0,
                (s("rx_util", inc) / len(inc)) if inc else float("nan"), s("cpu"),
                s("waiting_origin_mine")))
    print(f"  links: {len(ts)} samples every {dt:.2f} s; downlink idle = below {IDLE_UTIL:.0%} "
          "of its rate; utilisation = link bytes (with headers) / shaped rate")
    print("  while each node downloads (means): utilisation of its uplink and downlink, seconds its")
    print("  downlink sat idle, its pieces waiting for a parent / for the origin, its peer's CPU;")
    print("  tail_s: from the end of its downlink's last busy sample to `chunkfly get` done;")
    print("  no_parent_s: seconds it knew no parent holding a piece it lacked (nothing requested")
    print("  from parents, nothing waiting for one) while pieces were missing")
    print("  node  grp  window (s)     up_util  down_util  down_idle_s  waiting_parent  "
          "waiting_origin  cpu    tail_s  no_parent_s")
    all_down, all_up, all_idle, tails = [], [], 0.0, []
    for label in sorted(win, key=lambda x: int(x[1:]) if x[1:].isdigit() else 0):
        s0, e0, grp = win[label]
        rr = [r for r in rows if r["label"] == label and s0 <= float(r["t"]) <= e0]
        if not rr:
            continue
        up = sum(fnum(r["tx_util"]) for r in rr) / len(rr)
        down = sum(fnum(r["rx_util"]) for r in rr) / len(rr)
        idle = sum(dt for r in rr if fnum(r["rx_util"]) < IDLE_UTIL)
        wp = sum(fnum(r["waiting_parent"]) for r in rr) / len(rr)
        wo = sum(fnum(r["waiting_origin"]) for r in rr) / len(rr)
        cpu = sum(fnum(r["cpu"]) for r in rr) / len(rr)
        busy = [float(r["t"]) for r in rr if fnum(r["rx_util"]) >= IDLE_UTIL]
        tail = e0 - (max(busy) if busy else s0)
        tails.append(tail)
        nop = sum(dt for r in rr if fnum(r["missing"]) > 0 and fnum(r["req_parents"]) == 0
                  and fnum(r["waiting_parent"]) == 0 and r["missing"] != "")
        all_down.append(down)
        all_up.append(up)
        all_idle += idle
        print(f"  {label:<5} {grp:<3} {s0:5.1f}-{e0:6.1f}  {up:7.3f}  {down:9.3f}  {idle:11.1f}  "
              f"{wp:14.1f}  {wo:14.1f}  {cpu:.3f}  {tail:6.1f}  {nop:11.1f}")
    o = [r for r in rows if r["label"] == "origin" and first <= float(r["t"]) <= last]
    sc = [r for r in rows if r["label"] == "sched" and first <= float(r["t"]) <= last]
    peers = [r for r in rows if r["label"].startswith("n") and first <= float(r["t"]) <= last]
    nround = len([t for t in ts if first <= t <= last]) or 1
    mean = lambda rr, k: sum(fnum(r[k]) for r in rr) / len(rr) if rr else 0
    cpu_rounds = {}
    for r in peers:
        cpu_rounds[r["t"]] = cpu_rounds.get(r["t"], 0) + fnum(r["cpu"])
    nodes_up = [r for r in peers]
    print(f"  mean over nodes while downloading: up_util {sum(all_up) / max(len(all_up), 1):.3f} "
          f"down_util {sum(all_down) / max(len(all_down), 1):.3f}, downlink idle "
          f"{all_idle:.1f} node-s in total, tail after the last busy sample max "
          f"{max(tails, default=0):.1f} s")
    print(f"  from {first:.1f} s to the last node ({last:.1f} s): origin uplink "
          f"{mean(o, 'tx_util'):.3f}, nodes' uplinks {mean(nodes_up, 'tx_util'):.3f} "
          f"(every node, also after it finished), scheduler rx+tx "
          f"{(mean(sc, 'rx_bps') + mean(sc, 'tx_bps')) / 1e6:.2f} Mbit/s")
    print(f"  CPU (cores, of 2): peers together mean {sum(cpu_rounds.values()) / nround:.2f} "
          f"peak {max(cpu_rounds.values(), default=0):.2f}; origin registry "
          f"{mean(o, 'cpu'):.2f}; scheduler {mean(sc, 'cpu'):.3f}")


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "sample":
        sample(sys.argv[2], sys.argv[3], float(sys.argv[4]) if len(sys.argv) > 4 else 0.5)
    elif len(sys.argv) == 6 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
