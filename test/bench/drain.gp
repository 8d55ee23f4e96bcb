# test/bench/drain.gp: chart of the worker's drain throughput against
# partoo.max_in_flight, with the mock server's ceiling (wrk) at the same
# concurrency.  Called by test/bench/run.sh as
#   gnuplot -e "datafile='...'; outfile='...'; subtitle='...'" drain.gp
# datafile columns: max_in_flight, drain msg/s, mock ceiling req/s.
if (!exists("subtitle")) subtitle = ''
set terminal pngcairo size 800,480 font "sans,10"
set output outfile
set title "partoo worker: drain throughput vs partoo.max\\_in\\_flight\n{/*0.8 20,000 messages per point; " . subtitle . "}"
set xlabel "partoo.max_in_flight (wrk -c for the mock ceiling)" noenhanced
set ylabel "messages per second"
set logscale x 2
set xrange [6:170]
set xtics (8, 16, 32, 64, 128)
set format y "%.0f"
set yrange [0:*]
set grid ytics
set key top left
set datafile separator "\t"
plot datafile using 1:2 with linespoints lw 2 pt 7 title "partoo worker drain", \
     datafile using 1:3 with linespoints lw 2 pt 5 dt 2 title "mock ceiling (wrk, post.lua)"
