// Lua scripts for membership leases and actor ownership. Each runs atomically in Valkey,
// which is what makes "exactly one owner wins" hold under concurrent claims. Incarnations and
// epochs travel as strings (cjson would round large numbers).
//
// Owner entries have no TTL: an entry whose node's lease is gone (or belongs to an older
// incarnation) is free to reclaim, so steady-state traffic grows with nodes, not actors.
// The scripts read lease keys they build from a prefix: fine on a single Valkey (or a
// primary with replicas), not on Valkey Cluster, which this design does not use.

/** KEYS[1]=lease; ARGV: incarnation, ttlMs. 1 = renewed, 0 = lease gone (fence), -1 = another incarnation holds it. */
export const RENEW_LEASE = `
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
if cur ~= ARGV[1] then return -1 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;

/**
 * KEYS[1]=lease; ARGV: incarnation, ttlMs, then any incarnations this same process held and
 * fenced (it may take their lease: their actors are stopped). 1 = joined, 0 = a live process
 * already uses this node id.
 */
export const JOIN_LEASE = `
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] and string.sub(cur, 1, 5) ~= 'left:' then
  local ours = false
  for i = 3, #ARGV do if cur == ARGV[i] then ours = true end end
  if not ours then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;

/**
 * A planned leave: the lease becomes `left:<incarnation>` for a short while (KEYS[1]=lease;
 * ARGV: incarnation, ttlMs) instead of vanishing, so a peer that reads the lease before the
 * leave announcement reaches it still sees a leave, never a death. A rejoin may take it.
 */
export const LEAVE_LEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], 'left:' .. ARGV[1], 'PX', ARGV[2]) return 1 end
return 0`;

/** Compare-and-delete a lease. KEYS[1]=lease; ARGV: incarnation. */
export const DROP_LEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0`;

/**
 * KEYS = owner keys; ARGV: node, incarnation, lease key prefix, mode ("free" or "force").
 * Per key: 1 = claimed (entry written with epoch "0", pending), 2 = already ours, 0 = a live
 * owner holds it. "force" takes it from a live owner too (newest connection wins, for sites).
 * Returns -1 for every key when the claimer's own lease is not current.
 */
export const CLAIM_OWNERS = `
local res = {}
if redis.call('GET', ARGV[3] .. ARGV[1]) ~= ARGV[2] then
  for i = 1, #KEYS do res[i] = -1 end
  return res
end
for i, key in ipairs(KEYS) do
  local cur = redis.call('GET', key)
  local take = false
  if not cur then
    take = true
  else
    local o = cjson.decode(cur)
    if o.node == ARGV[1] and o.inc == ARGV[2] then
      res[i] = 2
    elseif ARGV[4] == 'force' or redis.call('GET', ARGV[3] .. o.node) ~= o.inc then
      take = true
    else
      res[i] = 0
    end
  end
  if take then
    redis.call('SET', key, cjson.encode({node = ARGV[1], inc = ARGV[2], epoch = '0'}))
    res[i] = 1
  end
end
return res`;

/** KEYS = owner keys; ARGV: node, incarnation, then one epoch per key. 1 = confirmed, 0 = lost meanwhile. */
export const CONFIRM_OWNERS = `
local res = {}
for i, key in ipairs(KEYS) do
  local cur = redis.call('GET', key)
  res[i] = 0
  if cur then
    local o = cjson.decode(cur)
    if o.node == ARGV[1] and o.inc == ARGV[2] then
      redis.call('SET', key, cjson.encode({node = ARGV[1], inc = ARGV[2], epoch = ARGV[2 + i]}))
      res[i] = 1
    end
  end
end
return res`;

/** KEYS = owner keys; ARGV: node, incarnation. Deletes the entries this incarnation holds. */
export const RELEASE_OWNERS = `
local res = {}
for i, key in ipairs(KEYS) do
  local cur = redis.call('GET', key)
  res[i] = 0
  if cur then
    local o = cjson.decode(cur)
    if o.node == ARGV[1] and o.inc == ARGV[2] then redis.call('DEL', key) res[i] = 1 end
  end
end
return res`;
