std = "max"
max_line_length = 120
files["spec/"] = { std = "+busted" }
files["bench/faults_spec.lua"] = { std = "+busted" }
exclude_files = { "build/", "lua_modules/" }
