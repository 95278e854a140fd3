local upstream = require "upstream"
print(upstream.new({}):report({ slot = 0, gen = math.huge }, true)) -- (uint64_t)inf: undefined behaviour
