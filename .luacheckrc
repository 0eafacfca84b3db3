std = "max"
max_line_length = 120
files["spec/"] = { std = "+busted" }
exclude_files = { "build/", "lua_modules/" }
files["examples/love/"] = { globals = { "love" } } -- LÖVE callbacks are fields of its global
