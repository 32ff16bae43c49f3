"""The Lua script that checks a whole batch of requests in one Redis call, and its codec.

One script call carries every request queued while the previous call was in flight
(a *batch* of *groups*, one group per request), so a gateway pays one round trip and
one redis-py call for many checks. Redis runs a script atomically: the groups are
decided one after another in arrival order, each all-or-nothing, against state no
other replica can change in between, and with one clock, Redis's own ``TIME``.

Keys (every name is hashed, so spaces, colons or any script in a subject are harmless):

* ``<prefix>r:<digest of subject, rate name, period>``: a hash holding one rate's
  window (``window.py``): fields ``u`` (units counted), ``lo`` (oldest bucket kept),
  ``hi`` (newest bucket used) and one field per sub-bucket index holding its units.
  It expires a little more than a period after its last use.
* ``<prefix>c:<digest of subject>``: a sorted set of the subject's concurrency leases,
  scored by when each lease expires, so a crashed replica's leases free themselves.

ARGV is ``lease_ms, BUCKETS, groups`` followed by the groups; each group is ``kind``
(``c`` check, ``f`` charge whatever the limits say, ``r`` release), its number of
demands and of slots, the lease id when it has slots, then per demand ``key index,
limit, cost, bucket µs, ttl ms`` and per slot ``key index, limit`` (a release: ``key
index``). A check's answer is ``allowed`` then, per demand, ``units left, µs to reset,
µs until it fits, code`` and, per slot, ``leases held, code``; charges and releases
answer nothing. Within a script call the state of each key is read once and written
once, however many groups touch it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from functools import lru_cache

from prodgate.limits.verdict import Demand, Slot
from prodgate.limits.window import BUCKETS, bucket_us

CHECK, CHARGE, RELEASE = "c", "f", "r"

LUA = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nowms = math.floor(now / 1000)
local lease_ms = tonumber(ARGV[1])
local N = tonumber(ARGV[2])
local ngroups = tonumber(ARGV[3])
local p = 4
local wins, sets, out = {}, {}, {}

local function fmt(x) return string.format('%d', x) end

-- The window of KEYS[ki] at `now`, its buckets older than the span dropped.
local function window(ki, b, ttl)
  local w = wins[ki]
  if w then return w end
  local key = KEYS[ki]
  local i = math.floor(now / b)
  local start = i - N
  local v = redis.call('HMGET', key, 'u', 'lo', 'hi')
  local used = tonumber(v[1]) or 0
  local lo = tonumber(v[2])
  local hi = tonumber(v[3]) or -1
  local dirty = false
  if lo == nil or start - lo > N then
    if lo ~= nil then redis.call('DEL', key) end
    used, lo, hi = 0, start, -1
  elseif start > lo then
    local f = {}
    for j = lo, start - 1 do f[#f + 1] = fmt(j) end
    local old = redis.call('HMGET', key, unpack(f))
    for k = 1, #old do
      if old[k] then used = used - tonumber(old[k]) end
    end
    redis.call('HDEL', key, unpack(f))
    lo, dirty = start, true
  end
  w = {key = key, b = b, ttl = ttl, i = i, used = used, lo = lo, hi = hi, add = 0,
       dirty = dirty}
  wins[ki] = w
  return w
end

-- Microseconds until buckets holding `over` units have left the span.
local function wait(w, over)
  if w.lo <= w.i then
    local f = {}
    for j = w.lo, w.i do f[#f + 1] = fmt(j) end
    local v = redis.call('HMGET', w.key, unpack(f))
    local freed = 0
    for k = 1, #v do
      local j = w.lo + k - 1
      local c = tonumber(v[k]) or 0
      if j == w.i then c = c + w.add end
      freed = freed + c
      if c > 0 and freed >= over then return (j + N + 1) * w.b - now end
    end
  end
  return (N + 1) * w.b
end

local function reset(w)
  if w.used <= 0 then return 0 end
  local r = (w.hi + N + 1) * w.b - now
  if r < 0 then return 0 end
  return r
end

local function leases(ki)
  local z = sets[ki]
  if z then return z end
  local key = KEYS[ki]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', nowms)
  z = {key = key, n = redis.call('ZCARD', key), dirty = false}
  sets[ki] = z
  return z
end

for g = 1, ngroups do
  local kind = ARGV[p]
  local nd, ns = tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2])
  p = p + 3
  local lease = nil
  if ns > 0 then lease = ARGV[p]; p = p + 1 end
  if kind == 'r' then
    for k = 1, ns do
      local ki = tonumber(ARGV[p]); p = p + 1
      if redis.call('ZREM', KEYS[ki], lease) == 1 and sets[ki] then
        sets[ki].n = sets[ki].n - 1
      end
    end
  else
    local ok, ds, ss, pend = true, {}, {}, {}
    for k = 1, nd do
      local ki, limit, cost = tonumber(ARGV[p]), tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2])
      local w = window(ki, tonumber(ARGV[p + 3]), tonumber(ARGV[p + 4]))
      p = p + 5
      local d = {w = w, limit = limit, cost = cost, code = 0, retry = 0}
      if kind == 'c' then
        local need = cost
        if need < 1 then need = 1 end
        local extra = pend[ki] or 0
        pend[ki] = extra + cost
        if need > limit then
          d.code, ok = 2, false
        elseif w.used + extra + need > limit then
          d.code, ok = 1, false
          d.retry = wait(w, w.used + extra + need - limit)
        end
      end
      ds[k] = d
    end
    for k = 1, ns do
      local z = leases(tonumber(ARGV[p]))
      local full = z.n + 1 > tonumber(ARGV[p + 1])
      p = p + 2
      if full then ok = false end
      ss[k] = {z = z, full = full}
    end
    if ok or kind == 'f' then
      for k = 1, nd do
        local d = ds[k]
        local w = d.w
        if d.cost > 0 then
          w.used, w.add, w.dirty = w.used + d.cost, w.add + d.cost, true
          if w.i > w.hi then w.hi = w.i end
        end
      end
      for k = 1, ns do
        local z = ss[k].z
        redis.call('ZADD', z.key, nowms + lease_ms, lease)
        z.n, z.dirty = z.n + 1, true
      end
    end
    if kind == 'c' then
      out[#out + 1] = ok and 1 or 0
      for k = 1, nd do
        local d = ds[k]
        out[#out + 1] = d.limit - d.w.used
        out[#out + 1] = reset(d.w)
        out[#out + 1] = d.retry
        out[#out + 1] = d.code
      end
      for k = 1, ns do
        out[#out + 1] = ss[k].z.n
        out[#out + 1] = ss[k].full and 1 or 0
      end
    end
  end
end

for _, w in pairs(wins) do
  if w.dirty then
    if w.add > 0 then redis.call('HINCRBY', w.key, fmt(w.i), w.add) end
    redis.call('HSET', w.key, 'u', fmt(w.used), 'lo', fmt(w.lo), 'hi', fmt(w.hi))
    redis.call('PEXPIRE', w.key, w.ttl)
  end
end
for _, z in pairs(sets) do
  if z.dirty then redis.call('PEXPIRE', z.key, lease_ms + 1000) end
end
return out
"""

SHA = hashlib.sha1(LUA.encode(), usedforsecurity=False).hexdigest()


@lru_cache(maxsize=65536)
def rate_key(prefix: str, subject: str, name: str, period_s: float) -> str:
    """The key of a subject's window on a rate: a digest, whatever characters they hold."""
    text = f"{subject}\x1f{name}\x1f{period_s!r}".encode()
    return prefix + "r:" + hashlib.blake2b(text, digest_size=16).hexdigest()


@lru_cache(maxsize=65536)
def slot_key(prefix: str, subject: str) -> str:
    """The key of a subject's concurrency leases."""
    return prefix + "c:" + hashlib.blake2b(subject.encode(), digest_size=16).hexdigest()


@lru_cache(maxsize=4096)
def _shape(period_s: float) -> tuple[int, int]:
    """A period's sub-bucket width (µs) and its keys' time to live (ms)."""
    b = bucket_us(period_s)
    return b, math.ceil((BUCKETS + 2) * b / 1000) + 1000


class Batch:
    """The KEYS and ARGV of one script call, built group by group."""

    __slots__ = ("args", "groups", "index", "keys", "prefix")

    def __init__(self, prefix: str, lease_ms: int) -> None:
        self.prefix = prefix
        self.keys: list[str] = []
        self.index: dict[str, int] = {}
        self.args: list[str | int] = [lease_ms, BUCKETS, 0]
        self.groups = 0

    def _key(self, key: str) -> int:
        i = self.index.get(key)
        if i is None:
            self.keys.append(key)
            i = self.index[key] = len(self.keys)
        return i

    def add(
        self, kind: str, demands: Sequence[Demand], slots: Sequence[Slot], lease_id: str
    ) -> None:
        """Add a check (``c``) or a charge (``f``) of *demands* taking *slots*."""
        args = self.args
        args += (kind, len(demands), len(slots))
        if slots:
            args.append(lease_id)
        prefix = self.prefix
        for d in demands:
            rate = d.rate
            b, ttl = _shape(rate.period_s)
            ki = self._key(rate_key(prefix, d.subject, rate.name, rate.period_s))
            args += (ki, rate.limit, d.cost, b, ttl)
        for s in slots:
            args += (self._key(slot_key(prefix, s.subject)), s.limit)
        self.groups += 1

    def add_release(self, lease_id: str, subjects: Sequence[str]) -> None:
        args = self.args
        args += (RELEASE, 0, len(subjects), lease_id)
        args += [self._key(slot_key(self.prefix, s)) for s in subjects]
        self.groups += 1

    def argv(self) -> list[str | int]:
        self.args[2] = self.groups
        return self.args


def answer_size(kind: str, demands: int, slots: int) -> int:
    """How many integers the script answers for a group."""
    return 1 + 4 * demands + 2 * slots if kind == CHECK else 0
