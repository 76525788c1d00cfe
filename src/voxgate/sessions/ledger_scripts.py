"""The Lua scripts of ``RedisLedger``: one per operation, so each check-and-change is atomic.

Every script starts with the same prelude: the declared keys, the time, and the two helpers
that settle a hold (on the account and on its session at once) and sweep expired holds.
"""

from __future__ import annotations

from voxgate.sessions.ledger import TOTALS_FIELDS

BALANCE_FIELDS = ("credited", "available", *TOTALS_FIELDS)


def _lua_list(names: tuple[str, ...]) -> str:
    return "{" + ", ".join(f"'{name}'" for name in names) + "}"


# KEYS[1] account hash, KEYS[2] holds, KEYS[3] sessions, then per script; ARGV[1] the account's
# key prefix, ARGV[2] now in ms ('' = server TIME), ARGV[3] retention in ms, then per script.
PRELUDE = f"""
local acct, holds, sessions = KEYS[1], KEYS[2], KEYS[3]
local base, retention = ARGV[1], tonumber(ARGV[3])
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local BALANCE, TOTALS = {_lua_list(BALANCE_FIELDS)}, {_lua_list(TOTALS_FIELDS)}

local function bump(key, field, by)
  if by ~= 0 then redis.call('HINCRBY', key, field, by) end
end

-- The same counters move on the account and on the hold's session.
local function settle(opk, session, amount, charged, state, kind)
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
  -- A session's record lives while it has holds, then for the retention period.
  if redis.call('HINCRBY', sk, 'holds_open', -1) == 0 then redis.call('PEXPIRE', sk, retention) end
  redis.call('ZADD', sessions, now, session)
end

local function sweep()
  local due = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  for _, op in ipairs(due) do
    local opk = base .. 'op:' .. op
    local h = redis.call('HMGET', opk, 'session', 'amount', 'state')
    if h[3] == 'held' then settle(opk, h[1], tonumber(h[2]), 0, 'expired', 'expiries') end
  end
  if #due > 0 then redis.call('ZREMRANGEBYSCORE', holds, '-inf', now) end
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

# ARGV[4] op_id, ARGV[5] amount.
CREDIT = (
    PRELUDE
    + """
if redis.call('EXISTS', acct) == 0 then return {'unknown_account'} end
sweep()
local previous = redis.call('HGET', base .. 'credits', ARGV[4])
if previous and previous ~= ARGV[5] then return {'op_conflict', previous} end
if not previous then
  redis.call('HSET', base .. 'credits', ARGV[4], ARGV[5])
  bump(acct, 'credited', tonumber(ARGV[5]))
  bump(acct, 'available', tonumber(ARGV[5]))
end
return {previous and 'replay' or 'applied', redis.call('HMGET', acct, unpack(BALANCE))}
"""
)

# ARGV[4] op_id, ARGV[5] session_id, ARGV[6] amount, ARGV[7] ttl in ms;
# KEYS[4] the reservation, KEYS[5] the session.
RESERVE = (
    PRELUDE
    + """
sweep()
local a = redis.call('HMGET', acct, 'available', 'held')
if not a[1] then return {'unknown_account'} end
local op, session, amount = ARGV[4], ARGV[5], tonumber(ARGV[6])
local h = redis.call('HMGET', KEYS[4], 'session', 'amount', 'state', 'expires')
if h[3] then
  if h[1] ~= session or tonumber(h[2]) ~= amount then return {'op_conflict', h[1], h[2]} end
  return {'replay', h[3], tonumber(h[4])}
end
if tonumber(a[1]) < amount then return {'quota', tonumber(a[1]), tonumber(a[2] or 0)} end
local expires = now + tonumber(ARGV[7])
redis.call('HSET', KEYS[4], 'session', session, 'amount', amount, 'state', 'held',
  'expires', expires, 'charged', 0, 'released', 0)
redis.call('ZADD', holds, expires, op)
for _, key in ipairs({acct, KEYS[5]}) do
  bump(key, 'reserved_total', amount)
  bump(key, 'held', amount)
  bump(key, 'reservations', 1)
  bump(key, 'holds_open', 1)
end
bump(acct, 'available', -amount)
redis.call('PERSIST', KEYS[5])
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
# of it replays instead of holding. KEYS[4] the reservation.
SETTLE = (
    PRELUDE
    + """
sweep()
local h = redis.call('HMGET', KEYS[4], 'session', 'amount', 'state', 'charged', 'released')
if not h[3] and ARGV[7] then
  redis.call('HSET', KEYS[4], 'session', ARGV[7], 'amount', ARGV[8], 'state', 'refunded',
    'expires', now, 'charged', 0, 'released', 0)
  redis.call('PEXPIRE', KEYS[4], retention)
  return {'refunded', 0, 0, 0}
end
if not h[3] then return {'unknown', 0, 0, 0} end
if h[3] ~= 'held' then return {h[3], tonumber(h[4]), tonumber(h[5]), 0} end
local amount, charged, state, kind = tonumber(h[2]), 0, 'refunded', 'refunds'
if ARGV[5] == 'commit' then
  charged, state, kind = tonumber(ARGV[6]) or amount, 'committed', 'commits'
  if charged > amount then return {'invalid_amount', amount, 0, 0} end
end
redis.call('ZREM', holds, ARGV[4])
settle(KEYS[4], h[1], amount, charged, state, kind)
return {state, charged, amount - charged, 1}
"""
)

BALANCE = (
    PRELUDE
    + """
if redis.call('EXISTS', acct) == 0 then return {'unknown_account'} end
return {sweep(), redis.call('HMGET', acct, unpack(BALANCE))}
"""
)

# KEYS[4] the session.
USAGE = (
    PRELUDE
    + """
sweep()
if redis.call('EXISTS', KEYS[4]) == 0 then return {'unknown_session'} end
return {'ok', redis.call('HMGET', KEYS[4], unpack(TOTALS))}
"""
)

SESSIONS = (
    PRELUDE
    + """
if redis.call('EXISTS', acct) == 0 then return {'unknown_account'} end
sweep()
redis.call('ZREMRANGEBYSCORE', sessions, '-inf', now - retention)
return {'ok', redis.call('ZRANGE', sessions, 0, -1)}
"""
)

# ARGV[4] session_id; KEYS[4] the session. Refunds every unsettled hold of the session, as
# refund of each would; returns the credits released ({'unknown_account'} if none).
RELEASE = (
    PRELUDE
    + """
if redis.call('EXISTS', acct) == 0 then return {'unknown_account'} end
sweep()
local open = tonumber(redis.call('HGET', KEYS[4], 'holds_open') or 0)
local released = 0
for _, op in ipairs(open > 0 and redis.call('ZRANGE', holds, 0, -1) or {}) do
  local opk = base .. 'op:' .. op
  local h = redis.call('HMGET', opk, 'session', 'amount', 'state')
  if h[1] == ARGV[4] and h[3] == 'held' then
    redis.call('ZREM', holds, op)
    settle(opk, h[1], tonumber(h[2]), 0, 'refunded', 'refunds')
    released = released + tonumber(h[2])
    open = open - 1
    if open == 0 then break end
  end
end
return {'ok', released}
"""
)
