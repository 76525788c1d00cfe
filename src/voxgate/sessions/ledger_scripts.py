"""The Lua scripts of ``RedisLedger``: one per operation, so each check-and-change is atomic.

Every script starts with the same prelude: the account's keys, the time, the helpers that
settle a hold (on the account and on its session at once) and sweep expired holds.

Every key a script touches is declared in ``KEYS``, as Redis asks of scripts on a cluster
(an undeclared key escapes the cluster's checks while its slot is being migrated). The
caller declares the keys it can name; a script first works out every key it will touch
(the holds it must sweep, the session of a hold) and, when one was not declared, answers
``{'undeclared', key, ...}`` having changed nothing, and the caller calls again declaring
them. Keys are named from the account's key prefix (``ARGV[1]``), so all of them hash to the
account's slot; ``KEYS[1]`` is always the account hash, which routes the call.

A replay (an op_id already applied: the caller's retry) counts itself in the account's
``replays`` field. That write is what makes the replay durable behind Sentinel: ``WAIT``
waits for what its connection wrote last, and a replay that wrote nothing would be answered
as soon as the replica had some older write, maybe before the one it replays.
"""

from __future__ import annotations

from voxgate.sessions.ledger import TOTALS_FIELDS

BALANCE_FIELDS = ("credited", "available", *TOTALS_FIELDS)


def _lua_list(names: tuple[str, ...]) -> str:
    return "{" + ", ".join(f"'{name}'" for name in names) + "}"


# ARGV[1] the account's key prefix, ARGV[2] now in ms ('' = server TIME), ARGV[3] retention
# in ms, then per script. A session's hash has a field hold:<op_id> for each unsettled hold.
PRELUDE = f"""
local base, retention = ARGV[1], tonumber(ARGV[3])
local acct, holds, sessions = base .. 'acct', base .. 'holds', base .. 'sessions'
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local BALANCE, TOTALS = {_lua_list(BALANCE_FIELDS)}, {_lua_list(TOTALS_FIELDS)}

-- Whether a key may be touched; if not, it joins the answer to the caller (`missing`).
local declared, missing = {{}}, {{'undeclared'}}
for _, key in ipairs(KEYS) do declared[key] = true end
local function need(key)
  if declared[key] then return true end
  if declared[key] == nil then
    declared[key] = false
    missing[#missing + 1] = key
  end
  return false
end
need(acct)
need(holds)
need(sessions)
if #missing > 1 then return missing end

local function bump(key, field, by)
  if by ~= 0 then redis.call('HINCRBY', key, field, by) end
end

-- The same counters move on the account and on the hold's session.
local function settle(op, opk, session, amount, charged, state, kind)
  local released = amount - charged
  redis.call('HSET', opk, 'state', state, 'charged', charged, 'released', released)
  redis.call('PEXPIRE', opk, retention)
  local sk = base .. 'sess:' .. session
  for _, key in ipairs({{acct, sk}}) do
    bump(key, 'held', -amount)
    bump(key, kind, 1)
    bump(key, 'committed', charged)
    bump(key, 'refunded', released)
    if kind == 'expiries' then bump(key, 'expired', released) end
  end
  bump(acct, 'holds_open', -1)
  bump(acct, 'available', released)
  redis.call('HDEL', sk, 'hold:' .. op)
  -- A session's record lives while it has holds, then for the retention period.
  if redis.call('HINCRBY', sk, 'holds_open', -1) == 0 then redis.call('PEXPIRE', sk, retention) end
  redis.call('ZADD', sessions, now, session)
end

-- The holds due at now, with the keys their expiry touches; read before anything changes.
local function due_holds()
  local due, members = {{}}, redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  for _, op in ipairs(members) do
    local opk = base .. 'op:' .. op
    if need(opk) then
      local h = redis.call('HMGET', opk, 'session', 'amount', 'state')
      if h[3] == 'held' and need(base .. 'sess:' .. h[1]) then
        due[#due + 1] = {{op, opk, h[1], tonumber(h[2])}}
      end
    end
  end
  return due, #members
end

local function sweep(due, members)
  for _, d in ipairs(due) do settle(d[1], d[2], d[3], d[4], 0, 'expired', 'expiries') end
  if members > 0 then redis.call('ZREMRANGEBYSCORE', holds, '-inf', now) end
  return #due
end
"""

CREATE = (
    PRELUDE
    + """
if redis.call('EXISTS', acct) == 1 then return 0 end
redis.call('HSET', acct, 'credited', ARGV[4], 'available', ARGV[4])
return 1
"""
)

# Each script below first names what it will touch, then answers `missing` if some key was
# not declared, then sweeps and does its work.
SWEEP_FIRST = """
local due, members = due_holds()
if #missing > 1 then return missing end
sweep(due, members)
"""

# ARGV[4] op_id, ARGV[5] amount.
CREDIT = (
    PRELUDE
    + """
local credits = base .. 'credits'
need(credits)
if redis.call('EXISTS', acct) == 0 then return {'unknown_account'} end
"""
    + SWEEP_FIRST
    + """
local previous = redis.call('HGET', credits, ARGV[4])
if previous and previous ~= ARGV[5] then return {'op_conflict', previous} end
if previous then
  bump(acct, 'replays', 1)
else
  redis.call('HSET', credits, ARGV[4], ARGV[5])
  bump(acct, 'credited', tonumber(ARGV[5]))
  bump(acct, 'available', tonumber(ARGV[5]))
end
return {previous and 'replay' or 'applied', redis.call('HMGET', acct, unpack(BALANCE))}
"""
)

# ARGV[4] op_id, ARGV[5] session_id, ARGV[6] amount, ARGV[7] ttl in ms.
RESERVE = (
    PRELUDE
    + """
local op, session, amount = ARGV[4], ARGV[5], tonumber(ARGV[6])
local opk, sk = base .. 'op:' .. op, base .. 'sess:' .. session
need(opk)
need(sk)
"""
    + SWEEP_FIRST
    + """
local a = redis.call('HMGET', acct, 'available', 'held')
if not a[1] then return {'unknown_account'} end
local h = redis.call('HMGET', opk, 'session', 'amount', 'state', 'expires')
if h[3] then
  if h[1] ~= session or tonumber(h[2]) ~= amount then return {'op_conflict', h[1], h[2]} end
  bump(acct, 'replays', 1)
  return {'replay', h[3], tonumber(h[4])}
end
if tonumber(a[1]) < amount then return {'quota', tonumber(a[1]), tonumber(a[2] or 0)} end
local expires = now + tonumber(ARGV[7])
redis.call('HSET', opk, 'session', session, 'amount', amount, 'state', 'held',
  'expires', expires, 'charged', 0, 'released', 0)
redis.call('ZADD', holds, expires, op)
for _, key in ipairs({acct, sk}) do
  bump(key, 'reserved_total', amount)
  bump(key, 'held', amount)
  bump(key, 'reservations', 1)
  bump(key, 'holds_open', 1)
end
bump(acct, 'available', -amount)
redis.call('HSET', sk, 'hold:' .. op, amount)
redis.call('PERSIST', sk)
if redis.call('ZADD', sessions, now, session) == 1 then
  -- A new session: forget those idle for the whole retention. They hold nothing any more,
  -- since each hold expires within ttl <= retention and expired holds were just swept.
  redis.call('ZREMRANGEBYSCORE', sessions, '-inf', now - retention)
end
return {'created', 'held', expires}
"""
)

# ARGV[4] op_id, ARGV[5] 'commit' or 'refund', ARGV[6] amount to charge ('' = all);
# a void (a refund of a reserve that may not have happened) adds ARGV[7] session, ARGV[8]
# amount: an unknown op_id is then recorded as refunded, holding nothing, so a late reserve
# of it replays instead of holding.
SETTLE = (
    PRELUDE
    + """
local op = ARGV[4]
local opk = base .. 'op:' .. op
if not need(opk) then return missing end
local fields = {'session', 'amount', 'state', 'charged', 'released'}
local h = redis.call('HMGET', opk, unpack(fields))
if h[3] == 'held' then need(base .. 'sess:' .. h[1]) end
"""
    + SWEEP_FIRST
    + """
h = redis.call('HMGET', opk, unpack(fields))  -- the sweep may have expired it
if not h[3] and ARGV[7] then
  redis.call('HSET', opk, 'session', ARGV[7], 'amount', ARGV[8], 'state', 'refunded',
    'expires', now, 'charged', 0, 'released', 0)
  redis.call('PEXPIRE', opk, retention)
  return {'refunded', 0, 0, 0}
end
if not h[3] then return {'unknown', 0, 0, 0} end
if h[3] ~= 'held' then
  bump(acct, 'replays', 1)
  return {h[3], tonumber(h[4]), tonumber(h[5]), 0}
end
local amount, charged, state, kind = tonumber(h[2]), 0, 'refunded', 'refunds'
if ARGV[5] == 'commit' then
  charged, state, kind = tonumber(ARGV[6]) or amount, 'committed', 'commits'
  if charged > amount then return {'invalid_amount', amount, 0, 0} end
end
redis.call('ZREM', holds, op)
settle(op, opk, h[1], amount, charged, state, kind)
return {state, charged, amount - charged, 1}
"""
)

BALANCE = (
    PRELUDE
    + """
if redis.call('EXISTS', acct) == 0 then return {'unknown_account'} end
local due, members = due_holds()
if #missing > 1 then return missing end
return {sweep(due, members), redis.call('HMGET', acct, unpack(BALANCE))}
"""
)

# ARGV[4] session_id.
USAGE = (
    PRELUDE
    + """
local sk = base .. 'sess:' .. ARGV[4]
need(sk)
"""
    + SWEEP_FIRST
    + """
if redis.call('EXISTS', sk) == 0 then return {'unknown_session'} end
return {'ok', redis.call('HMGET', sk, unpack(TOTALS))}
"""
)

SESSIONS = (
    PRELUDE
    + """
if redis.call('EXISTS', acct) == 0 then return {'unknown_account'} end
"""
    + SWEEP_FIRST
    + """
redis.call('ZREMRANGEBYSCORE', sessions, '-inf', now - retention)
return {'ok', redis.call('ZRANGE', sessions, 0, -1)}
"""
)

# ARGV[4] session_id. Refunds every unsettled hold of the session, as a refund of each
# would; answers the credits released. The caller cannot name the holds' keys: the first
# call answers them as undeclared, from the session's hold:<op_id> fields.
RELEASE = (
    PRELUDE
    + """
local sk = base .. 'sess:' .. ARGV[4]
local ops = {}
if need(sk) then
  for _, field in ipairs(redis.call('HKEYS', sk)) do
    if string.sub(field, 1, 5) == 'hold:' then
      local op = string.sub(field, 6)
      if need(base .. 'op:' .. op) then ops[#ops + 1] = op end
    end
  end
end
if redis.call('EXISTS', acct) == 0 then return {'unknown_account'} end
"""
    + SWEEP_FIRST
    + """
local released = 0
for _, op in ipairs(ops) do
  local opk = base .. 'op:' .. op
  local h = redis.call('HMGET', opk, 'session', 'amount', 'state')
  if h[3] == 'held' then
    redis.call('ZREM', holds, op)
    settle(op, opk, h[1], tonumber(h[2]), 0, 'refunded', 'refunds')
    released = released + tonumber(h[2])
  end
end
return {'ok', released}
"""
)
