#!/bin/sh
# Usage: tools/with-broker.sh COMMAND...
# Starts a private mosquitto on a free loopback port, runs COMMAND with
# MQTT_URI=tcp://127.0.0.1:PORT and MQTT_BROKER_PID (so a demo can freeze it
# with SIGSTOP) in its environment, then stops the broker.
dir=$(mktemp -d /tmp/paho-mqtt-demo.XXXXXX)
cleanup() { [ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null && kill "$pid" 2>/dev/null; sleep 0.2; rm -rf "$dir"; }
trap cleanup EXIT INT TERM
tries=0
while [ $tries -lt 20 ]; do
  tries=$((tries + 1))
  port=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 40000 ))
  {
    echo "listener $port 127.0.0.1"
    echo "allow_anonymous true"
    echo "log_dest file $dir/mosquitto.log"
    [ "$(id -u)" -eq 0 ] && echo "user root"
  } > "$dir/mosquitto.conf"
  : > "$dir/mosquitto.log"
  mosquitto -c "$dir/mosquitto.conf" >/dev/null 2>&1 &
  pid=$!
  i=0
  while [ $i -lt 100 ]; do
    grep -q running "$dir/mosquitto.log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05; i=$((i + 1))
  done
  if grep -q running "$dir/mosquitto.log"; then
    echo "mosquitto listening on 127.0.0.1:$port"
    MQTT_URI="tcp://127.0.0.1:$port" MQTT_BROKER_PID=$pid "$@"
    exit $?
  fi
  kill "$pid" 2>/dev/null; pid=""
done
echo "could not start mosquitto" >&2
exit 1
