# paho.mqtt for Lua - developer Makefile.
#
# Variables (override on the command line, e.g. `make LUA=lua5.3`):
#   LUA          the interpreter to build for and test with (lua5.4, lua5.3,
#                lua5.1, luajit)                              default: lua5.4
#   LUA_INCDIR   where lua.h is                    default: from LUA
#   PAHO_INCDIR  where MQTTAsync.h is              default: /usr/include
#   PAHO_LIBDIR  where libpaho-mqtt3as is          default: the linker's path
#   PAHO_SRC     a paho.mqtt.c source tarball or directory: build paho from it
#                for speed (PAHO_HIGH_PERFORMANCE, TLS, static) and link it
#                into the core, which then needs no system paho; use with a
#                BUILD of its own, e.g. make PAHO_SRC=paho.mqtt.c-1.3.12.tar.gz
#                BUILD=build/paho-src test (tools/build-paho.sh; docs/packaging.md)
#   CC, CFLAGS, LDFLAGS, PREFIX, DESTDIR, LUA_LIBDIR, LUA_SHAREDIR
#
# Targets: all (build), test, test-all, ci, demo, bench, asan, valgrind, tsan,
#          gc-stress, fuzz, lint (layers, then luacheck), layers, install,
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
PAHO_SRC    ?=
PAHO_INCDIR ?= /usr/include
PAHO_LIBDIR ?=
PREFIX      ?= /usr/local
LUA_LIBDIR  ?= $(PREFIX)/lib/lua/$(LUA_ABI)
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_ABI)

CC       ?= cc
CFLAGS   ?= -O2 -g
WARN     := -std=c99 -Wall -Wextra -Werror -Wshadow -pedantic -Wno-overlength-strings
LIBFLAG  ?= -shared
, := ,

BUILD    ?= build/$(LUA)
ifneq ($(PAHO_SRC),)
# paho built from source into the build directory (tools/build-paho.sh), linked
# statically; its symbols stay inside core.so (--exclude-libs), so a system
# paho loaded by something else in the process cannot clash with it
PAHO_OUT    := $(BUILD)/paho-build
PAHO_INCDIR := $(PAHO_OUT)/install/include
PAHO_LIB    := $(PAHO_OUT)/install/lib/libpaho-mqtt3as.a
LIBS     := $(PAHO_LIB) -Wl$(,)--exclude-libs$(,)ALL -lssl -lcrypto -lpthread -ldl
else
PAHO_LIB    :=
LIBS     := $(if $(PAHO_LIBDIR),-L$(PAHO_LIBDIR) -Wl$(,)-rpath$(,)$(PAHO_LIBDIR)) -lpaho-mqtt3as -lpthread -ldl
endif
# paho's headers are third-party: included as system headers, so that our
# -pedantic -Werror does not judge them (MQTTProperties.h has an unnamed union)
PAHO_CFLAGS := $(if $(filter /usr/include,$(PAHO_INCDIR)),,-isystem $(PAHO_INCDIR))
ALLCFLAGS = $(CFLAGS) $(WARN) -D_POSIX_C_SOURCE=200809L -fPIC -fvisibility=hidden \
            -I$(LUA_INCDIR) $(PAHO_CFLAGS)
SRCS     := $(wildcard src/*.c)
OBJS     := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(SRCS))
CORE     := $(BUILD)/paho/mqtt/core.so

# what tests and examples need to find the modules of this tree
export LUA_PATH  := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/support/?.lua;;
export LUA_CPATH := $(CURDIR)/$(BUILD)/?.so;;

.PHONY: all deps test test-all ci demo bench bench-raw soak asan asan-build valgrind tsan tsan-build gc-stress gc-stress-build fuzz lint layers install clean

all: $(CORE) build/tools/faultproxy

# the fault-injection proxy the specs start (tools/faultproxy.c); fixed flags,
# so that `make asan` does not leave an instrumented binary behind
build/tools/faultproxy: tools/faultproxy.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g $(WARN) -D_POSIX_C_SOURCE=200809L -o $@ $<

$(BUILD)/obj/%.o: src/%.c src/pmq.h src/luapmq.h $(PAHO_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) -c $< -o $@

$(CORE): $(OBJS) $(PAHO_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) $(LDFLAGS) -o $@ $(OBJS) $(LIBS)

ifneq ($(PAHO_SRC),)
$(PAHO_LIB):
	sh tools/build-paho.sh "$(PAHO_SRC)" $(PAHO_OUT)
endif

deps:
	@sh tools/deps.sh $(LUA)

# `make test` installs what is missing, builds and runs the whole suite
test: deps
	@$(MAKE) --no-print-directory all
	@sh tools/run-tests.sh $(LUA) $(BUSTED_ARGS)

# every Lua in turn, each against its own build/<lua> core; a summary at the end
test-all:
	@sh tools/test-all.sh $(BUSTED_ARGS)

# what CI runs (.ci/run): lint, fuzz, the suite on every Lua and under asan,
# tsan, valgrind and gc-stress, several suites at once (tools/ci.sh;
# CI_PARTS picks parts, e.g. make ci CI_PARTS="valgrind tsan")
CI_PARTS ?=
ci:
	@bash tools/ci.sh $(CI_PARTS)

demo: deps
	@$(MAKE) --no-print-directory all
	@sh tools/with-broker.sh sh -c '$(LUA) examples/session_demo.lua && echo && $(LUA) examples/keepalive_demo.lua'

# the binding against raw paho.mqtt.c (bench/raw.c, built with the same
# PAHO_INCDIR/PAHO_LIBDIR); see docs/performance.md. BENCH_REPS, BENCH_SCALE,
# BENCH_CASES and BENCH_SLOW_N tune it (bench/run.lua). Exits 0 when it ran.
# the peers of the race (bench/race.lua): paho built from source and luamqtt,
# from the third-party sources next to the repository when they are there
BENCH_THIRD_PARTY ?= $(firstword $(wildcard $(CURDIR)/../shared/third_party /work/shared/third_party))
BENCH_PAHO_SRC    ?= $(wildcard $(BENCH_THIRD_PARTY)/paho.mqtt.c-1.3.12.tar.gz)
BENCH_LUAMQTT     ?= $(wildcard $(BENCH_THIRD_PARTY)/luamqtt-3.4.3.tar.gz)

bench: deps bench-raw
	@PMQ_BENCH=1 sh tools/deps.sh $(LUA)
	@if [ -n "$(BENCH_PAHO_SRC)" ]; then \
	  $(MAKE) --no-print-directory PAHO_SRC=$(BENCH_PAHO_SRC) BUILD=build/paho-src all bench-raw; fi
	@RACE_RAW=$(BUILD)/bench/raw RACE_SYS_CPATH="$(LUA_CPATH)" RACE_LUAMQTT="$(BENCH_LUAMQTT)" \
	  RACE_SRC_BUILD=$(if $(BENCH_PAHO_SRC),$(CURDIR)/build/paho-src) \
	  $(LUA) bench/run.lua $(BUILD)/bench/raw

# bench/raw.c, the same workloads through paho's C API, against this BUILD's paho
bench-raw: all
	@mkdir -p $(BUILD)/bench
	$(CC) $(CFLAGS) -std=c99 -Wall -Wextra $(PAHO_CFLAGS) -o $(BUILD)/bench/raw bench/raw.c $(LDFLAGS) $(LIBS)

# SOAK_MINUTES (30) of mixed traffic with faults, one line per minute (RSS,
# descriptors, threads, messages): bench/soak.lua. Not in CI.
SOAK_MINUTES ?= 30
soak: deps
	@$(MAKE) --no-print-directory all
	@SOAK_MINUTES=$(SOAK_MINUTES) LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/support/?.lua;;" \
	  LUA_CPATH="$(CURDIR)/build/$(LUA)/?.so;;" $(LUA) bench/soak.lua

# AddressSanitizer + UBSan over the whole suite. The uninstrumented
# interpreter gets the runtime by LD_PRELOAD, and so does every program the
# specs start (mosquitto, sed, id...), whose own leaks are not ours: leak
# checking is left to `make valgrind`, which checks only the Lua process.
# (asan-build, tsan-build, gc-stress-build: the build step alone, which
# tools/ci.sh runs one after the other before the suites run side by side)
asan: deps asan-build
	@LUA_CPATH="$(CURDIR)/build/asan-$(LUA)/?.so;;" \
	  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  sh tools/run-tests.sh $(LUA) $(BUSTED_ARGS)

asan-build:
	@$(MAKE) --no-print-directory BUILD=build/asan-$(LUA) \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined" all

valgrind: deps
	@$(MAKE) --no-print-directory all
	@PMQ_VALGRIND=1 sh tools/run-tests.sh $(LUA) $(BUSTED_ARGS)

# ThreadSanitizer (gcc's libtsan) over the specs in TSAN_SPECS (default: the
# whole suite), e.g. make tsan TSAN_SPECS="spec/core_spec.lua spec/keepalive_spec.lua".
# The core is built with -fsanitize=thread into build/tsan-$(LUA). The
# uninstrumented interpreter gets the runtime by LD_PRELOAD, like `make asan`,
# through a $(LUA) first in PATH (tools/lua-wrap.sh), so only Lua processes
# get it; tools/tsan-preload.c takes it out of the environment once the core
# is loaded, as shells crash under the TSan runtime. Races inside
# libpaho-mqtt3as (not instrumented) are suppressed in tools/tsan.supp, each
# with its reason. A report fails the run (exit code 66).
TSAN_SPECS ?=
tsan: deps tsan-build
	@PMQ_WRAP=tsan PMQ_WRAP_LUA="$$(command -v $(LUA))" \
	  PMQ_TSAN_PRELOAD="$$($(CC) -print-file-name=libtsan.so) $(CURDIR)/build/tsan-$(LUA)/tsan-preload.so" \
	  PATH="$(CURDIR)/build/tsan-$(LUA)/bin:$$PATH" LUA_CPATH="$(CURDIR)/build/tsan-$(LUA)/?.so;;" \
	  TSAN_OPTIONS="suppressions=$(CURDIR)/tools/tsan.supp halt_on_error=0 exitcode=66 second_deadlock_stack=1 $(TSAN_OPTIONS)" \
	  sh tools/run-tests.sh $(LUA) $(BUSTED_ARGS) $(TSAN_SPECS)

tsan-build: build/tsan-$(LUA)/tsan-preload.so
	@$(MAKE) --no-print-directory BUILD=build/tsan-$(LUA) \
	  CFLAGS="-O1 -g -fsanitize=thread -fno-omit-frame-pointer" LDFLAGS="-fsanitize=thread" all
	@mkdir -p build/tsan-$(LUA)/bin && ln -sf $(CURDIR)/tools/lua-wrap.sh build/tsan-$(LUA)/bin/$(LUA)
	@ln -sfn $(dir $(LUA_INCDIR)) build/tsan-$(LUA)/include # luarocks looks for lua.h next to bin/

build/tsan-$(LUA)/tsan-preload.so: tools/tsan-preload.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -std=c99 -Wall -Wextra -Werror -shared -fPIC -o $@ $< -ldl

# The suite with the garbage collector running all the time
# (tools/gc-stress.lua; PMQ_GC_MODE=incremental (default), generational or
# full). A $(LUA) first in PATH (tools/lua-wrap.sh) runs busted, and every Lua
# program the specs start, through tools/gc-stress.lua.
gc-stress: deps gc-stress-build
	@echo "gc-stress: $(LUA), $${PMQ_GC_MODE:-incremental} collector"
	@PMQ_WRAP=gc-stress PMQ_WRAP_LUA="$$(command -v $(LUA))" PMQ_GC_STRESS="$(CURDIR)/tools/gc-stress.lua" \
	  PATH="$(CURDIR)/build/gc-stress-$(LUA)/bin:$$PATH" \
	  sh tools/run-tests.sh $(LUA) $(BUSTED_ARGS)

gc-stress-build:
	@$(MAKE) --no-print-directory all
	@mkdir -p build/gc-stress-$(LUA)/bin && ln -sf $(CURDIR)/tools/lua-wrap.sh build/gc-stress-$(LUA)/bin/$(LUA)
	@ln -sfn $(dir $(LUA_INCDIR)) build/gc-stress-$(LUA)/include # luarocks looks for lua.h next to bin/

# libFuzzer over the core's property and option code (fuzz/props_fuzz.c:
# every src/*.c built with clang -fsanitize=fuzzer,address,undefined, linked
# with liblua5.4; no network). Runs FUZZ_SECONDS (60) from the seeds in
# fuzz/corpus/ (fuzz/seeds.py writes them); new inputs go to build/fuzz/corpus,
# a crashing input to build/fuzz/crash-*. FUZZ_ARGS adds libFuzzer flags, e.g.
# FUZZ_ARGS="-fork=1 -ignore_crashes=1" to go on after a finding;
# PMQ_FUZZ_ORACLE=0 checks memory errors only. Replay: build/fuzz/props_fuzz FILE
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_LUA     ?= lua5.4
fuzz:
	@PMQ_FUZZ=1 sh tools/deps.sh $(FUZZ_LUA)
	@$(MAKE) --no-print-directory build/fuzz/props_fuzz
	@mkdir -p build/fuzz/corpus
	build/fuzz/props_fuzz -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=build/fuzz/ -print_final_stats=1 \
	  $(FUZZ_ARGS) build/fuzz/corpus fuzz/corpus

build/fuzz/props_fuzz: fuzz/props_fuzz.c $(SRCS) src/pmq.h src/luapmq.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -std=c99 -Wall -Wextra -D_POSIX_C_SOURCE=200809L -I/usr/include/$(FUZZ_LUA) -I$(PAHO_INCDIR) \
	  -o $@ fuzz/props_fuzz.c $(SRCS) -l$(FUZZ_LUA) $(LIBS) -lm

# luacheck, after `layers`: the C core's files call each other in no circle
# and nothing below the thread boundary uses Lua (tools/check-layers.sh reads
# the graph off the objects with nm; docs/architecture.md, Layers)
lint: layers
	luacheck lua spec examples bench

layers: $(CORE)
	@sh tools/check-layers.sh $(BUILD)/obj

install: $(CORE)
	install -d $(DESTDIR)$(LUA_LIBDIR)/paho/mqtt $(DESTDIR)$(LUA_SHAREDIR)/paho/mqtt
	install -m 0755 $(CORE) $(DESTDIR)$(LUA_LIBDIR)/paho/mqtt/core.so
	install -m 0644 lua/paho/mqtt.lua $(DESTDIR)$(LUA_SHAREDIR)/paho/mqtt.lua
	install -m 0644 lua/paho/mqtt/*.lua $(DESTDIR)$(LUA_SHAREDIR)/paho/mqtt/

clean:
	rm -rf build
