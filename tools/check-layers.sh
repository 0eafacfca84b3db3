#!/bin/sh
# Usage: tools/check-layers.sh [-v] [OBJDIR]
#   OBJDIR  the objects of a build of the C core      default: build/lua5.4/obj
#   -v      also print every edge with the symbols it uses, and an order
#
# The C core is layered (docs/architecture.md, "Layers"): a file calls only
# files below it, so no two files call each other, directly or round a longer
# circle. This reads the file dependency graph off the objects with nm (file
# A depends on file B when A uses a global symbol that B defines) and fails
# when the graph has a circle, naming the files of each circle and the
# symbols on its edges. A lower layer that must reach up does so through a
# function pointer the upper one sets (pmq_ctx.pub_done, trace.c's listener),
# which is no link-time edge.
#
# It also fails when the thread boundary (events.o) or anything it calls uses
# a Lua symbol: no Lua call may happen on paho's threads.
#
# Exit status: 0 layered, 1 not, 2 no objects or no nm.
set -u
dir=build/lua5.4/obj
verbose=0
for a in "$@"; do
  case $a in
    -v) verbose=1 ;;
    -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) dir=$a ;;
  esac
done
command -v nm >/dev/null 2>&1 || { echo "check-layers: nm not found" >&2; exit 2; }
set -- "$dir"/*.o
[ -f "$1" ] || { echo "check-layers: no objects in $dir (make all first)" >&2; exit 2; }

for o in "$@"; do
  f=$(basename "$o" .o)
  # defined: a global symbol of any type but U (T, D, B, R, W...); used: U
  nm -g "$o" | awk -v f="$f" 'NF >= 2 { t = $(NF-1); s = $NF
      if (t == "U") print "U", f, s; else if (t ~ /^[A-Z]$/) print "D", f, s }'
done | awk -v verbose="$verbose" '
  $1 == "D" { def[$3] = $2; node[$2] = 1; next }
  $1 == "U" { node[$2] = 1; nu++; ua[nu] = $2; us[nu] = $3; next }
  END {
    for (i = 1; i <= nu; i++) {
      a = ua[i]; s = us[i]
      if (s ~ /^luaL?_/ && !(a in lua)) lua[a] = s
      if (!(s in def) || def[s] == a) continue   # libc, Lua, paho; itself
      b = def[s]
      if (!((a, b) in edge)) { edge[a, b] = s; ne++ } else edge[a, b] = edge[a, b] " " s
    }
    n = 0
    for (x in node) name[++n] = x
    for (i = 2; i <= n; i++) {   # sorted, so that the output is stable
      v = name[i]
      for (j = i - 1; j >= 1 && name[j] > v; j--) name[j + 1] = name[j]
      name[j + 1] = v
    }
    for (i = 1; i <= n; i++) for (j = 1; j <= n; j++) reach[i, j] = ((name[i], name[j]) in edge)
    for (k = 1; k <= n; k++) for (i = 1; i <= n; i++) if (reach[i, k])
      for (j = 1; j <= n; j++) if (reach[k, j]) reach[i, j] = 1
    if (verbose)
      for (i = 1; i <= n; i++) for (j = 1; j <= n; j++) if ((name[i], name[j]) in edge)
        printf "%s.c -> %s.c: %s\n", name[i], name[j], edge[name[i], name[j]]
    bad = 0
    # each strongly connected part of more than one file is a circle
    for (i = 1; i <= n; i++) {
      if (!reach[i, i] || (i in part)) continue
      bad = 1; files = ""
      for (j = 1; j <= n; j++) if (reach[i, j] && reach[j, i]) { part[j] = i; files = files " " name[j] ".c" }
      printf "check-layers: a circle of calls between:%s\n", files
      for (j = 1; j <= n; j++) for (k = 1; k <= n; k++)
        if (part[j] == i && part[k] == i && ((name[j], name[k]) in edge))
          printf "  %s.c -> %s.c: %s\n", name[j], name[k], edge[name[j], name[k]]
    }
    # the thread boundary and everything below it: no Lua
    for (i = 1; i <= n; i++) {
      if (name[i] != "events") continue
      for (j = 1; j <= n; j++)
        if ((j == i || reach[i, j]) && (name[j] in lua)) {
          bad = 1
          printf "check-layers: %s.c is %s, and uses Lua (%s...)\n", name[j],
                 j == i ? "the thread boundary" : "reached from the thread boundary (events.c)", lua[name[j]]
        }
    }
    if (bad) {
      print "check-layers: the C core must stay layered (docs/architecture.md, Layers): move the code down, or call up through a pointer the upper file sets"
      exit 1
    }
    if (verbose) {
      line = ""   # bottom first: each file after every file it calls
      for (left = n; left > 0; ) for (i = 1; i <= n; i++) {
        if (i in placed) continue
        ok = 1
        for (j = 1; j <= n; j++) if (j != i && !(j in placed) && ((name[i], name[j]) in edge)) ok = 0
        if (ok) { placed[i] = 1; left--; line = line " " name[i] ".c" }
      }
      print "order, bottom first:" line
    }
    printf "check-layers: %d files, %d edges, no circle\n", n, ne
  }'
