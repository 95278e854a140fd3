-- Loaded with busted --helper for the aggressive-GC pass: a full collection
-- cycle is kept running at every allocation step, so a Lua value the binding
-- forgot to anchor is collected under its feet.
collectgarbage("setpause", 0)
collectgarbage("setstepmul", 1000)
