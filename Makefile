# paho.mqtt for Lua - developer Makefile.
#
# Variables (override on the command line, e.g. `make LUA=lua5.3`):
#   LUA          the interpreter to build for and test with (lua5.4, lua5.3,
#                lua5.1, luajit)                              default: lua5.4
#   LUA_INCDIR   where lua.h is                    default: from LUA
#   PAHO_INCDIR  where MQTTAsync.h is              default: /usr/include
#   PAHO_LIBDIR  where libpaho-mqtt3as is          default: the linker's path
#   CC, CFLAGS, LDFLAGS, PREFIX, DESTDIR, LUA_LIBDIR, LUA_SHAREDIR
#
# Targets: all (build), test, demo, bench, asan, valgrind, lint, install,
#          clean, deps (install the Debian packages the project needs).

LUA         ?= lua5.4
LUA_VERSION ?= $(if $(findstring luajit,$(LUA)),jit,$(patsubst lua%,%,$(notdir $(LUA))))
ifeq ($(LUA_VERSION),jit)
LUA_INCDIR  ?= /usr/include/luajit-2.1
LUA_ABI     := 5.1
else
LUA_INCDIR  ?= /usr/include/lua$(LUA_VERSION)
LUA_ABI     := $(LUA_VERSION)
endif
PAHO_INCDIR ?= /usr/include
PAHO_LIBDIR ?=
PREFIX      ?= /usr/local
LUA_LIBDIR  ?= $(PREFIX)/lib/lua/$(LUA_ABI)
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_ABI)

CC       ?= cc
CFLAGS   ?= -O2 -g
WARN     := -std=c99 -Wall -Wextra -Werror -Wshadow -pedantic -Wno-overlength-strings
ALLCFLAGS = $(CFLAGS) $(WARN) -D_POSIX_C_SOURCE=200809L -fPIC -fvisibility=hidden \
            -I$(LUA_INCDIR) -I$(PAHO_INCDIR)
LIBFLAG  ?= -shared
LIBS     := $(if $(PAHO_LIBDIR),-L$(PAHO_LIBDIR) -Wl$(,)-rpath$(,)$(PAHO_LIBDIR)) -lpaho-mqtt3as -lpthread -ldl
, := ,

BUILD    ?= build/$(LUA)
SRCS     := $(wildcard src/*.c)
OBJS     := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(SRCS))
CORE     := $(BUILD)/paho/mqtt/core.so

# what tests and examples need to find the modules of this tree
export LUA_PATH  := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;
export LUA_CPATH := $(CURDIR)/$(BUILD)/?.so;;

.PHONY: all deps test test-all demo bench asan valgrind lint install clean

all: $(CORE) build/tools/faultproxy

# the fault-injection proxy the specs start (tools/faultproxy.c); fixed flags,
# so that `make asan` does not leave an instrumented binary behind
build/tools/faultproxy: tools/faultproxy.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g $(WARN) -D_POSIX_C_SOURCE=200809L -o $@ $<

$(BUILD)/obj/%.o: src/%.c src/pmq.h src/luapmq.h
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) -c $< -o $@

$(CORE): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) $(LDFLAGS) -o $@ $(OBJS) $(LIBS)

deps:
	@sh tools/deps.sh $(LUA)

# `make test` installs what is missing, builds and runs the whole suite
test: deps
	@$(MAKE) --no-print-directory all
	@sh tools/run-tests.sh $(LUA) $(BUSTED_ARGS)

# every Lua in turn, each against its own build/<lua> core; a summary at the end
test-all:
	@sh tools/test-all.sh $(BUSTED_ARGS)

demo: deps
	@$(MAKE) --no-print-directory all
	@sh tools/with-broker.sh sh -c '$(LUA) examples/session_demo.lua && echo && $(LUA) examples/keepalive_demo.lua'

# the binding against raw paho.mqtt.c (bench/raw.c, built with the same
# PAHO_INCDIR/PAHO_LIBDIR); see docs/performance.md. BENCH_REPS, BENCH_SCALE,
# BENCH_CASES and BENCH_SLOW_N tune it (bench/run.lua). Exits 0 when it ran.
bench: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p $(BUILD)/bench
	$(CC) $(CFLAGS) -std=c99 -Wall -Wextra -I$(PAHO_INCDIR) -o $(BUILD)/bench/raw bench/raw.c $(LDFLAGS) $(LIBS)
	@$(LUA) bench/run.lua $(BUILD)/bench/raw

# AddressSanitizer + UBSan over the whole suite. The uninstrumented
# interpreter gets the runtime by LD_PRELOAD, and so does every program the
# specs start (mosquitto, sed, id...), whose own leaks are not ours: leak
# checking is left to `make valgrind`, which checks only the Lua process.
asan: deps
	@$(MAKE) --no-print-directory BUILD=build/asan-$(LUA) \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined" all
	@LUA_CPATH="$(CURDIR)/build/asan-$(LUA)/?.so;;" \
	  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  sh tools/run-tests.sh $(LUA) $(BUSTED_ARGS)

valgrind: deps
	@$(MAKE) --no-print-directory all
	@PMQ_VALGRIND=1 sh tools/run-tests.sh $(LUA) $(BUSTED_ARGS)

lint:
	luacheck lua spec examples

install: $(CORE)
	install -d $(DESTDIR)$(LUA_LIBDIR)/paho/mqtt $(DESTDIR)$(LUA_SHAREDIR)/paho/mqtt
	install -m 0755 $(CORE) $(DESTDIR)$(LUA_LIBDIR)/paho/mqtt/core.so
	install -m 0644 lua/paho/mqtt.lua $(DESTDIR)$(LUA_SHAREDIR)/paho/mqtt.lua
	install -m 0644 lua/paho/mqtt/*.lua $(DESTDIR)$(LUA_SHAREDIR)/paho/mqtt/

clean:
	rm -rf build
