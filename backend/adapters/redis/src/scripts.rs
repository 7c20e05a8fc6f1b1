//! The Lua scripts behind presence: each is one atomic read-modify-write on the server, so
//! counts stay exact when gateways add and remove the same user's endpoints at once, and
//! every expiry is computed on the Redis server's clock (`TIME`), so gateways whose clocks
//! disagree still agree on what has expired.
//!
//! A presence key is a sorted set of `gateway_id/conn_id` members scored by their expiry in
//! milliseconds since the epoch. Expired members are dropped on every write, reads skip
//! them, and the key itself expires (`PEXPIREAT`) with its longest-lived member, so a user
//! nobody refreshes leaves no key behind.

use std::sync::LazyLock;

use redis::Script;

/// `now` in ms on the server's clock, then `expire_at(key)`: the key lives as long as its
/// longest-lived member. Shared by the writing scripts.
const PRELUDE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function expire_at(key)
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if top[2] then
    redis.call('PEXPIREAT', key, string.format('%.0f', tonumber(top[2])))
  end
end
";

/// KEYS[1] presence key; ARGV[1] member, ARGV[2] ttl in ms. Returns the live count.
pub static ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
expire_at(KEYS[1])
return redis.call('ZCARD', KEYS[1])
"
    ))
});

/// KEYS[1] presence key; ARGV[1] member. Returns the live count left. The key's expiry
/// stays: it is never earlier than the remaining members' (an emptied set is deleted).
pub static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"
    ))
});

/// KEYS[i] presence key of entry i; ARGV[1] ttl in ms, ARGV[i + 1] member of entry i.
/// Sets (or restores) every entry's expiry to now + ttl. Returns the number of entries.
pub static REFRESH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}
local exp = now + tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('ZADD', key, exp, ARGV[i + 1])
  expire_at(key)
end
return #KEYS
"
    ))
});

/// KEYS[i] presence key of user i. Returns, per key, the members that have not expired.
/// Read-only: expired members are left for the next write to drop.
pub static LIVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('ZRANGEBYSCORE', key, '(' .. string.format('%.0f', now), '+inf')
end
return out
",
    )
});
