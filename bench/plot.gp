# bench/plot.gp - the sweep's figures from its results.csv (bench/sweep.sh
# runs it; gnuplot from the gnuplot-nox package).
#
#   gnuplot -e "csv='DIR/results.csv'; outdir='DIR'; caption='...'" bench/plot.gp
#
# Writes, each as SVG and PNG, one panel per broker (mock, kafka) side by side:
#   rps.{svg,png}    answered requests/s vs partitions, one line per kchat
#                    --workers setting, plus the echo baseline
#   p99.{svg,png}    closed-loop p99 latency (ms) vs partitions, same lines
#   ratio.{svg,png}  kchat rps / echo rps at the same partition count
# `caption` (the command that produced the data) is printed under each figure.
# Only closed-loop rows are plotted. Columns of results.csv are looked up by
# name in its header, so added columns do not break this script.

if (!exists("csv")) csv = "results.csv"
if (!exists("outdir")) outdir = "."
if (!exists("caption")) caption = ""

set datafile separator ","
# awk program text shared by every series: columns by header name
hdr = "NR==1{for(i=1;i<=NF;i++)c[$i]=i;next} $c[\"loop\"]==\"closed\""
series(broker, mode, w, col) = sprintf("< awk -F, -v OFS=, '%s && $c[\"broker\"]==\"%s\" && $c[\"mode\"]==\"%s\" && (\"%s\"==\"\" || $c[\"workers\"]==\"%s\") {print $c[\"partitions\"], $c[\"%s\"]}' %s | sort -n", hdr, broker, mode, w, w, col, csv)
ratio(broker, w) = sprintf("< awk -F, -v OFS=, '%s && $c[\"broker\"]==\"%s\" {if ($c[\"mode\"]==\"echo\") e[$c[\"partitions\"]]=$c[\"rps\"]; else if ($c[\"workers\"]==\"%s\") k[$c[\"partitions\"]]=$c[\"rps\"]} END {for (p in k) if (e[p] > 0) print p, k[p] / e[p]}' %s | sort -n", hdr, broker, w, csv)

brokers = system(sprintf("awk -F, 'NR==1{for(i=1;i<=NF;i++)c[$i]=i;next} {print $c[\"broker\"]}' %s | awk '!s[$0]++' | tr '\\n' ' '", csv))
workers = system(sprintf("awk -F, 'NR==1{for(i=1;i<=NF;i++)c[$i]=i;next} $c[\"mode\"]==\"kchat\" {print $c[\"workers\"]}' %s | sort -n | uniq | tr '\\n' ' '", csv))
nb = words(brokers)
if (nb < 1) { print "plot.gp: no rows in ".csv; exit }

set logscale x 2
set xtics (1, 2, 4, 8, 16, 32, 64)
set offsets graph 0.05, graph 0.05, graph 0.08, 0
set xlabel "partitions (= kchat shards)"
set grid
set key top left box opaque
set style data linespoints
set pointsize 1.2

do for [fmt in "svg png"] {
    if (fmt eq "svg") {
        set terminal svg size 520*nb, 460 dynamic font "Helvetica,12" background "white"
    } else {
        set terminal pngcairo size 520*nb, 460 font "Helvetica,10" background "white"
    }
    do for [fig in "rps p99 ratio"] {
        set output sprintf("%s/%s.%s", outdir, fig, fmt)
        set multiplot layout 1, nb title (fig eq "rps" ? "throughput, closed loop" : \
            fig eq "p99" ? "p99 latency, closed loop" : "kchat throughput / echo throughput") \
            margins 0.08, 0.98, 0.2, 0.88 spacing 0.08
        do for [bi = 1:nb] {
            b = word(brokers, bi)
            set title "broker: ".b
            if (bi == nb) { set label 99 caption at screen 0.01, screen 0.03 left font ",9" noenhanced }
            if (fig eq "rps") {
                set ylabel "answered requests/s"
                set yrange [0:*]
                plot for [w in workers] series(b, "kchat", w, "rps") \
                         title sprintf("kchat, %s worker%s", w, w eq "1" ? "" : "s"), \
                     series(b, "echo", "", "rps") title "echo baseline" lw 2 dt 2 lc rgb "black"
            }
            if (fig eq "p99") {
                set ylabel "p99 latency (ms)"
                set yrange [0:*]
                plot for [w in workers] series(b, "kchat", w, "p99_ms") \
                         title sprintf("kchat, %s worker%s", w, w eq "1" ? "" : "s"), \
                     series(b, "echo", "", "p99_ms") title "echo baseline" lw 2 dt 2 lc rgb "black"
            }
            if (fig eq "ratio") {
                set ylabel "kchat rps / echo rps"
                set yrange [0:*]
                plot for [w in workers] ratio(b, w) \
                         title sprintf("kchat, %s worker%s", w, w eq "1" ? "" : "s")
            }
        }
        unset title
        unset multiplot
        unset label 99
        unset output
    }
}
