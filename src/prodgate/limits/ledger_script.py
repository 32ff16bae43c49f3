"""The Lua script of the Redis ledger: many reserves, settles and reads in one call.

Each period of each allowance is one Redis string holding the units spent in it
(micro-dollars or tokens), named ``<prefix><allowance name>:<period id>:<subject>``
(``prodgate:ledger:budget_day:20250131:key:3f9a1c2b0d4e``); nothing before the
subject holds a colon, so two allowances never share a key. It expires an hour after
its period ends (EXPIREAT), which leaves time for calls still running at the turn to
settle; a settle that comes later finds its period gone and leaves nothing behind.

One script call carries everything a replica queued while its previous call was in
flight (a *batch* of *groups*), so a burst costs one round trip and one connection
rather than one of each per request. Redis runs a script atomically: the groups are
decided one after another, each reserve all or nothing, against totals no other
replica can change in between, so replicas reserving at once are exact.

ARGV is the number of groups, then each group: its kind (``r`` reserve, ``s``
settle, ``g`` read), its number of claims, then per claim four values: the key's
index in KEYS, then for a reserve its limit, amount and expiry (Unix seconds), for a
settle its delta (actual minus reserved), expiry and a 0, for a read three 0s.

A reserve checks every claim first (spent + amount <= limit, an amount of 0 needing
room for 1) and adds the amounts only if all fit; it answers ``1, 0`` when taken,
else ``0, m`` then, for each of the m claims that did not fit, its 1-based index and
what its period had spent. A settle adds each delta (a total pushed below zero, its
key evicted mid-call, becomes zero) and answers nothing. A read answers each key's
total.
"""

from __future__ import annotations

import hashlib

RESERVE, SETTLE, SPENT = "r", "s", "g"

LUA = r"""
local ngroups = tonumber(ARGV[1])
local p = 2
local out = {}
for g = 1, ngroups do
  local kind = ARGV[p]
  local n = tonumber(ARGV[p + 1])
  p = p + 2
  if kind == 'r' then
    local spent, pend, refused = {}, {}, {}
    for i = 1, n do
      local q = p + 4 * (i - 1)
      local k = KEYS[tonumber(ARGV[q])]
      local limit, amount = tonumber(ARGV[q + 1]), tonumber(ARGV[q + 2])
      local s = spent[k]
      if s == nil then
        s = tonumber(redis.call('GET', k) or '0') or 0
        spent[k] = s
      end
      local extra = pend[k] or 0
      local need = amount
      if need < 1 then need = 1 end
      if s + extra + need > limit then
        refused[#refused + 1] = i
        refused[#refused + 1] = s
      end
      pend[k] = extra + amount
    end
    if #refused == 0 then
      for i = 1, n do
        local q = p + 4 * (i - 1)
        local k = KEYS[tonumber(ARGV[q])]
        if tonumber(ARGV[q + 2]) > 0 then redis.call('INCRBY', k, ARGV[q + 2]) end
        redis.call('EXPIREAT', k, ARGV[q + 3])
      end
      out[#out + 1] = 1
      out[#out + 1] = 0
    else
      out[#out + 1] = 0
      out[#out + 1] = #refused / 2
      for j = 1, #refused do out[#out + 1] = refused[j] end
    end
  elseif kind == 'g' then
    for i = 1, n do
      out[#out + 1] = tonumber(redis.call('GET', KEYS[tonumber(ARGV[p + 4 * (i - 1)])]) or '0')
    end
  else
    for i = 1, n do
      local q = p + 4 * (i - 1)
      local k = KEYS[tonumber(ARGV[q])]
      if tonumber(ARGV[q + 1]) ~= 0 then
        if redis.call('INCRBY', k, ARGV[q + 1]) < 0 then redis.call('SET', k, '0') end
        redis.call('EXPIREAT', k, ARGV[q + 2])
      end
    end
  end
  p = p + 4 * n
end
return out
"""

SHA = hashlib.sha1(LUA.encode(), usedforsecurity=False).hexdigest()


class Batch:
    """The KEYS and ARGV of one script call, built group by group."""

    __slots__ = ("args", "index", "keys")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.index: dict[str, int] = {}
        self.args: list[str | int] = [0]

    def add(self, kind: str, rows: list[tuple[str, int, int, int]]) -> None:
        """A group of *kind*: per claim its key and three numbers (see the module)."""
        args = self.args
        args += (kind, len(rows))
        for key, a, b, c in rows:
            i = self.index.get(key)
            if i is None:
                self.keys.append(key)
                i = self.index[key] = len(self.keys)
            args += (i, a, b, c)
        args[0] = int(args[0]) + 1
