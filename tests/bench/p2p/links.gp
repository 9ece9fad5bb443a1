# Every link's utilisation over time in a bench_p2p.sh run (issue 14), from link_sampler.py's
# links.dat / totals.dat. gnuplot -e "dir='D'; out='F.png'; ttl='...'; nodes=N; tend=T; slots=K"
set terminal pngcairo size 1500,1700 font "DejaVu Sans,11"
set output out
set multiplot layout 4,1 title ttl font ",13"
set xrange [0:tend]
set lmargin 12
set rmargin 14
set grid xtics
set palette defined (0 "#f7f7f7", 0.05 "#fee8c8", 0.3 "#fdbb84", 0.6 "#e34a33", 0.9 "#7f0000", 1.1 "#000000")
set cbrange [0:1.1]
set cblabel "fraction of the shaped rate"
set yrange [-0.5:nodes+0.5]
set ytics 1
if (nodes > 16) { set ytics 4 }
set ytics add ("origin" 0)
set ylabel "node"
set xlabel ""
set title "uplinks (tx): bytes sent / shaped rate, per 0.5 s"
plot dir."/links.dat" using 1:2:(0.25):(0.5):3 with boxxyerror fs solid noborder fc palette notitle
set title "downlinks (rx, after the ingress tbf) / shaped rate"
plot dir."/links.dat" using 1:2:(0.25):(0.5):4 with boxxyerror fs solid noborder fc palette notitle
unset colorbox
set ytics auto
set yrange [0:1.1]
set ylabel "mean utilisation"
set y2range [0:nodes*1.05]
set y2tics
set y2label "nodes downloading"
set key inside top right opaque box samplen 2
set title "mean of the uplinks (origin + nodes) and of the downlinks of nodes still downloading"
plot dir."/totals.dat" using 1:8 with lines lw 2 lc rgb "#1b9e77" title "uplinks", \
     "" using 1:9 with lines lw 2 lc rgb "#d95f02" title "downlinks (downloading)", \
     "" using 1:7 axes x1y2 with steps lw 1 lc rgb "#555555" title "nodes downloading"
set title "missing pieces over all nodes: requested (origin, parents) and not requested (waiting)"
set yrange [0:*]
set ylabel "pieces"
set y2range [0:nodes*slots*1.05]
set y2label "idle upload slots (all nodes)"
set xlabel "seconds since the common start"
plot dir."/totals.dat" using 1:2 with lines lw 2 lc rgb "#7570b3" title "waiting: a parent has it", \
     "" using 1:3 with lines lw 2 lc rgb "#e7298a" title "waiting: no parent has it (origin)", \
     "" using 1:11 with lines lw 1 dt 2 lc rgb "#e7298a" title "  of which granted to the node", \
     "" using 1:4 with lines lw 1 lc rgb "#66a61e" title "requested from parents", \
     "" using 1:5 with lines lw 1 lc rgb "#e6ab02" title "requested from the origin", \
     "" using 1:6 axes x1y2 with lines lw 1 lc rgb "#999999" title "idle upload slots"
unset multiplot
