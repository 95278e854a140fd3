-- Statistics and pure-Lua reference models for the pick-strategy specs
-- (no dependency on the binding; runs on Lua 5.1-5.4 and LuaJIT).
local stats = {}

-- Park-Miller "minimal standard" generator: the same sequence on every Lua
-- (products stay below 2^53, so doubles and integers agree), independent of
-- math.random and of the module's own generator.
function stats.rng(seed)
  local x = seed % 2147483647
  if x <= 0 then x = x + 2147483646 end
  local r = {}
  function r.next()
    x = (x * 16807) % 2147483647
    return x
  end
  -- an integer in [1, n]
  function r.int(n) return (r.next() % n) + 1 end
  return r
end

-- The index of the first element of arr raw-equal to v, or nil.
function stats.index(arr, v)
  for i = 1, #arr do
    if rawequal(arr[i], v) then return i end
  end
  return nil
end

-- Picks n times (with key when given: a value, or a function of i) and
-- counts the backends; nil results are counted under the key "nil".
function stats.count_picks(list, n, key)
  local counts = {}
  for i = 1, n do
    local b
    if key == nil then b = list:pick()
    elseif type(key) == "function" then b = list:pick(key(i))
    else b = list:pick(key) end
    if b == nil then b = "nil" end
    counts[b] = (counts[b] or 0) + 1
  end
  return counts
end

-- n picks as an array (nil shown as "nil").
function stats.picks(list, n, key)
  local out = {}
  for i = 1, n do
    local b = list:pick(key)
    if b == nil then b = "nil" end
    out[i] = b
  end
  return out
end

-- The set of distinct values of an array, as a sorted array of strings.
function stats.set(arr)
  local seen, out = {}, {}
  for _, v in ipairs(arr) do
    local s = tostring(v)
    if not seen[s] then seen[s] = true; out[#out + 1] = s end
  end
  table.sort(out)
  return out
end

-- The keys of a counts table, as a sorted array of strings.
function stats.keys(counts)
  local out = {}
  for k in pairs(counts) do out[#out + 1] = tostring(k) end
  table.sort(out)
  return out
end

-- Pearson's chi-square statistic of observed counts (by name) against
-- probabilities proportional to weights (weights[i] for names[i]) over n.
function stats.chi2(counts, names, weights, n)
  local total = 0
  for i = 1, #names do total = total + weights[i] end
  local chi2 = 0
  for i = 1, #names do
    local expected = n * weights[i] / total
    local d = (counts[names[i]] or 0) - expected
    chi2 = chi2 + d * d / expected
  end
  return chi2
end

-- Whether |got - want| <= tol; with a message for assert.
function stats.near(got, want, tol, what)
  local ok = math.abs(got - want) <= tol
  return ok, string.format("%s: got %.4f, want %.4f +- %.4f", what or "value", got, want, tol)
end

-- Smooth weighted round robin exactly as nginx (ngx_http_upstream_get_peer):
-- every eligible member's current += weight; the greatest current wins,
-- ties to the earliest position; the winner's current -= total. Members
-- that are not up are skipped and keep their current.
function stats.swrr(names, weights)
  local m = { names = names, w = {}, cur = {}, up = {} }
  for i = 1, #names do
    m.w[i] = weights[i] or 1
    m.cur[i] = 0
    m.up[i] = true
  end
  function m.pick()
    local best, total = nil, 0
    for i = 1, #names do
      if m.up[i] then
        m.cur[i] = m.cur[i] + m.w[i]
        total = total + m.w[i]
        if best == nil or m.cur[i] > m.cur[best] then best = i end
      end
    end
    if best == nil then return nil end
    m.cur[best] = m.cur[best] - total
    return names[best]
  end
  -- every member equal to name
  function m.set_up(name, up)
    for i = 1, #names do
      if rawequal(names[i], name) then m.up[i] = up end
    end
  end
  function m.set_weight(name, w)
    for i = 1, #names do
      if rawequal(names[i], name) then m.w[i] = w end
    end
  end
  function m.seq(n)
    local out = {}
    for i = 1, n do out[i] = m.pick() or "nil" end
    return out
  end
  return m
end

-- Least connections, exact form (up to 16 eligible members): the eligible
-- member with the fewest in flight; ties go to the first one in a scan that
-- starts after the last pick (position 1 before any pick) and wraps.
-- Members are distinct.
function stats.least_conn(names)
  local m = { names = names, inflight = {}, up = {}, last = 0 }
  for i = 1, #names do
    m.inflight[i] = 0
    m.up[i] = true
  end
  function m.pick()
    local n, best = #names, nil
    for j = 1, n do
      local i = (m.last + j - 1) % n + 1
      if m.up[i] and (best == nil or m.inflight[i] < m.inflight[best]) then best = i end
    end
    if best == nil then return nil end
    m.last = best
    m.inflight[best] = m.inflight[best] + 1
    return names[best]
  end
  function m.release(name)
    local i = stats.index(names, name)
    if i == nil or m.inflight[i] == 0 then return false end
    m.inflight[i] = m.inflight[i] - 1
    return true
  end
  function m.set_up(name, up)
    m.up[stats.index(names, name)] = up
  end
  return m
end

return stats
