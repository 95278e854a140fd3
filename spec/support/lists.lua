-- Lists on a fake clock (util.fake_clock) for the specs: the clock is the
-- list's clock, its sleep the list's sleep, so nothing sleeps for real.
local upstream = require "upstream"
local util = require "spec.support.util"
local lists = {}

-- A list of backends on the fake clock c; opts (optional) go over its
-- clock and sleep.
function lists.with_clock(backends, c, opts)
  return upstream.new(backends, util.merge({ clock = c.clock, sleep = c.sleep }, opts))
end

-- A list of backends on a new fake clock started at start (default 0);
-- returns the list and the clock.
function lists.new(backends, opts, start)
  local c = util.fake_clock(start or 0)
  return lists.with_clock(backends, c, opts), c
end

return lists
