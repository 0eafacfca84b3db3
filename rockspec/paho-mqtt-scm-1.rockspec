rockspec_format = "3.0"
package = "paho-mqtt"
version = "scm-1"

source = {
   url = "git+https://github.com/paho-mqtt-lua/paho-mqtt-lua.git",
}

description = {
   summary = "Lua binding for the Eclipse Paho MQTT C client (MQTT 3.1, 3.1.1 and 5)",
   detailed = [[
paho.mqtt binds the asynchronous Eclipse Paho MQTT C client library
(libpaho-mqtt3as) for Lua 5.1, 5.3, 5.4 and LuaJIT: clients, QoS 0/1/2,
persistent sessions, MQTT 5 properties, TLS and WebSockets; handlers run in
coroutines on the Lua thread, fed by a bounded queue with backpressure.
]],
   homepage = "https://github.com/paho-mqtt-lua/paho-mqtt-lua",
   -- this binding's own license; paho.mqtt.c (EPL-2.0 or EDL-1.0) is linked,
   -- not shipped, and keeps its own license: see LICENSE and NOTICE
   license = "MIT",
   labels = { "mqtt", "paho", "iot", "network" },
}

-- the C core uses POSIX threads, poll(2) and eventfd (or a pipe); built and
-- tested on Linux (Debian 12)
supported_platforms = { "unix" }

dependencies = {
   "lua >= 5.1",
}

-- libpaho-mqtt3as, the asynchronous paho.mqtt.c library (Debian/Ubuntu:
-- apt-get install libpaho-mqtt-dev). luarocks looks under /usr/local, /usr
-- and /; for a paho installed elsewhere give its prefix or its directories:
--   luarocks make PAHO_MQTT_DIR=/opt/paho
--   luarocks make PAHO_MQTT_INCDIR=/opt/paho/include PAHO_MQTT_LIBDIR=/opt/paho/lib64
external_dependencies = {
   PAHO_MQTT = {
      header = "MQTTAsync.h",
      library = "paho-mqtt3as",
   },
}

-- Every C file under src/ and every file under lua/ must be listed here:
-- spec/rockspec_spec.lua and tools/rock-check.sh compare this list with the
-- tree (luarocks 3 installs all of lua/ whatever the list says, so an
-- install alone would not show a missing entry). docs/packaging.md.
build = {
   type = "builtin",
   modules = {
      ["paho.mqtt.core"] = {
         sources = {
            "src/client.c",
            "src/clock.c",
            "src/codes.c",
            "src/core.c",
            "src/events.c",
            "src/host.c",
            "src/keepalive.c",
            "src/outbox.c",
            "src/retire.c",
            "src/probe.c",
            "src/props.c",
            "src/quirks.c",
            "src/queue.c",
            "src/requests.c",
            "src/trace.c",
            "src/util.c",
            "src/wake.c",
         },
         defines = { "_POSIX_C_SOURCE=200809L" },
         incdirs = { "$(PAHO_MQTT_INCDIR)" },
         libdirs = { "$(PAHO_MQTT_LIBDIR)" },
         libraries = { "paho-mqtt3as", "pthread", "dl" },
      },
      ["paho.mqtt"] = "lua/paho/mqtt.lua",
      ["paho.mqtt.options"] = "lua/paho/mqtt/options.lua",
      ["paho.mqtt.topic"] = "lua/paho/mqtt/topic.lua",
      -- the parts of paho.mqtt, one job each (docs/architecture.md)
      ["paho.mqtt.class"] = "lua/paho/mqtt/class.lua",
      ["paho.mqtt.errors"] = "lua/paho/mqtt/errors.lua",
      ["paho.mqtt.inbox"] = "lua/paho/mqtt/inbox.lua",
      ["paho.mqtt.publish"] = "lua/paho/mqtt/publish.lua",
      ["paho.mqtt.request"] = "lua/paho/mqtt/request.lua",
      ["paho.mqtt.scheduler"] = "lua/paho/mqtt/scheduler.lua",
      ["paho.mqtt.session"] = "lua/paho/mqtt/session.lua",
      ["paho.mqtt.subscribe"] = "lua/paho/mqtt/subscribe.lua",
      ["paho.mqtt.token"] = "lua/paho/mqtt/token.lua",
      ["paho.mqtt.trace"] = "lua/paho/mqtt/trace.lua",
      ["paho.mqtt.workarounds"] = "lua/paho/mqtt/workarounds.lua",
      -- event-loop adapters: each needs its loop (cqueues, luv, copas,
      -- OpenResty) only when it is required, so none is a dependency here
      ["paho.mqtt.adapter"] = "lua/paho/mqtt/adapter.lua",
      ["paho.mqtt.copas"] = "lua/paho/mqtt/copas.lua",
      ["paho.mqtt.cqueues"] = "lua/paho/mqtt/cqueues.lua",
      ["paho.mqtt.luv"] = "lua/paho/mqtt/luv.lua",
      ["paho.mqtt.nginx"] = "lua/paho/mqtt/nginx.lua",
   },
}
