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
MQTT 5 properties, TLS, WebSockets, persistence and automatic reconnect.
]],
   homepage = "https://github.com/paho-mqtt-lua/paho-mqtt-lua",
   license = "MIT", -- placeholder: the tree has no LICENSE file yet; confirm
   labels = { "mqtt", "paho", "iot", "network" },
}

dependencies = {
   "lua >= 5.1",
}

external_dependencies = {
   PAHO_MQTT = {
      header = "MQTTAsync.h",
      library = "paho-mqtt3as",
   },
}

build = {
   type = "builtin",
   modules = {
      ["paho.mqtt.core"] = {
         sources = {
            "src/client.c",
            "src/core.c",
            "src/events.c",
            "src/props.c",
            "src/util.c",
         },
         defines = { "_POSIX_C_SOURCE=200809L" },
         incdirs = { "$(PAHO_MQTT_INCDIR)" },
         libdirs = { "$(PAHO_MQTT_LIBDIR)" },
         libraries = { "paho-mqtt3as", "pthread", "dl" },
      },
      ["paho.mqtt"] = "lua/paho/mqtt.lua",
      ["paho.mqtt.options"] = "lua/paho/mqtt/options.lua",
   },
}
