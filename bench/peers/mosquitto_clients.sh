#!/bin/sh
# bench/peers/mosquitto_clients.sh - the race's workload through libmosquitto's
# own command-line clients: mosquitto_sub -C N counts the messages,
# mosquitto_pub -l sends one message per line of a file of N lines of SIZE
# bytes (its documented way to send many messages on one connection).
#
#   sh bench/peers/mosquitto_clients.sh HOST PORT N SIZE QOS
#
# Prints one "RESULT impl=mosquitto ..." line, as bench.lua does (the time is
# from the start of mosquitto_pub to the exit of mosquitto_sub).
host=$1 port=$2 n=$3 size=$4 qos=$5
dir=$(mktemp -d /tmp/race-mosq.XXXXXX)
trap 'rm -rf "$dir"' EXIT
topic="race/mosquitto/$$"
line=$(head -c "$size" /dev/zero | tr '\0' x)
i=0
awk -v n="$n" -v l="$line" 'BEGIN { for (i = 0; i < n; i++) print l }' > "$dir/lines"
mosquitto_sub -h "$host" -p "$port" -t "$topic" -q "$qos" -C "$n" -W 60 > "$dir/got" &
sub=$!
sleep 0.3 # subscribed (mosquitto_sub has no way to say so)
t0=$(date +%s.%N)
mosquitto_pub -h "$host" -p "$port" -t "$topic" -q "$qos" -l < "$dir/lines"
wait "$sub"
t1=$(date +%s.%N)
got=$(wc -l < "$dir/got")
awk -v q="$qos" -v s="$size" -v n="$n" -v g="$got" -v a="$t0" -v b="$t1" 'BEGIN {
  e = b - a; printf "RESULT impl=mosquitto mode=throughput qos=%d size=%d n=%d received=%d bad=0 elapsed_s=%.4f msgs_per_s=%.0f\n", q, s, n, g, e, g / e }'
