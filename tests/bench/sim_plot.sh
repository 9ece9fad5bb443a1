#!/usr/bin/env bash
# Plot a `chunkfly-sched-sim flow --csv` file: every uplink's Mbit/s per second (the origin
# thick), one line per node; meant for small meshes (one line each). Needs gnuplot.
# usage: tests/bench/sim_plot.sh FLOW.csv OUT.png [TITLE]
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 FLOW.csv OUT.png [TITLE]" >&2; exit 2; }
csv=$1 png=$2 title=${3:-"chunkfly-sched-sim flow: uplink use per second"}
command -v gnuplot >/dev/null || { echo "$0: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
dat=$(mktemp)
trap 'rm -f "$dat"' EXIT
# pivot: second, origin, node 0, node 1, ... (Mbit/s sent)
awk -F, 'NR > 1 { v[$1 "," $2] = $5 * 8 / 1e6; if ($1 > m) m = $1; if ($2 > n) n = $2 }
    END { for (s = 0; s <= m; s++) { printf "%d", s
            for (i = -1; i <= n; i++) printf " %.3f", v[s "," i]; printf "\n" }
          print n + 1 > "/dev/stderr" }' "$csv" >"$dat" 2>"$dat.n"
nodes=$(cat "$dat.n"); rm -f "$dat.n"
gnuplot <<GP
set terminal pngcairo size 1000,600 font ",10"
set output "$png"
set title "$title"
set xlabel "time (s)"
set ylabel "Mbit/s sent"
set key outside right
set grid
plot "$dat" using 1:2 with lines lw 3 title "origin", \
     for [i=3:$((nodes + 2))] "$dat" using 1:i with lines title sprintf("node %d", i-3)
GP
