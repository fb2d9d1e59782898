"""The charging state in Redis: each line's account and each open session, changed atomically by Lua scripts.

Why Redis: measured on a 2-core machine, a reserve written as one PostgreSQL transaction (lock, update,
insert) ran about 3,700 to 4,600 times a second, a Lua script on Redis about 8,800 times with the same
Python client; and a charging request must leave most of the machine to HTTP. PostgreSQL stays the
record: a session's usage, once settled, goes to a stream, and the ledger rates it into usage records
and balances there (`mvne.charging.online.ledger`). The Redis that holds this state must keep it
(`appendonly yes`, `appendfsync always`): it is the only copy of open reservations and of settled usage
not yet written, and the engine refuses a Redis that does not keep it unless told to accept one.

Keys (under a namespace):
- `acc:<line>`: the line's account, a hash: `v` (a version every change bumps), `meta` (the buckets'
  fixed terms, as JSON), `u:<bucket>` and `e:<bucket>` (units used and EU units used, reservations
  included), `pp` (1: the line is prepaid), `m` (its money left in micro-units, reservations deducted),
  `sp` (spent beyond the buckets this period, reservations included), `cap` and `cap_a` (its spend cap and
  action, when it has one), `cus` (its customer), `open` (sessions open), `pend` (settled usage not written
  to PostgreSQL yet). An account no session holds and with nothing pending expires after a while; the next
  session reads the line again.
- `ses:<digest of the session id>`: a session, a hash: `line`, `seq` (the last request's number), `ans`
  (its answer, for a repeated request), `state` (its reservations per rating group, JSON), `closed`.
  A released session is kept closed for a while, so a repeated release gets its answer again.
- `cus:<customer>`: what the customer's lines spent this period (`sp`), its spend cap (`cap`, `cap_a`), `v`,
  `open` and `pend` as an account's, shared by its lines' accounts and changed in the same scripts.
- `expiry`: a sorted set of open sessions by when they go stale, for the sweeper.
- `settled`: a stream of settled usage for the ledger, read by a consumer group.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

LEDGER_GROUP = "ledger"

# KEYS: session; ARGV: namespace, line (empty: the session's own). The session's hash, its line's account, and the
# account's customer's hash.
_READ = """
local s = redis.call('HGETALL', KEYS[1])
local line = ARGV[2]
if line == '' then
  for i = 1, #s, 2 do if s[i] == 'line' then line = s[i + 1] end end
end
local a, c = {}, {}
if line ~= '' then
  a = redis.call('HGETALL', ARGV[1] .. 'acc:' .. line)
  for i = 1, #a, 2 do
    if a[i] == 'cus' then c = redis.call('HGETALL', ARGV[1] .. 'cus:' .. a[i + 1]) end
  end
end
return {s, a, c}
"""

# KEYS: account, customer; ARGV: idle seconds, n, n account (field, value) pairs, then the customer's pairs. Writes
# each unless it exists.
_INIT = """
local n = tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 0 then
  for i = 3 + 2 * n, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[1]))
end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 3, 2 + 2 * n, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""

# KEYS: session, account, customer, expiry, settled.
# ARGV: account version, customer version, sequence the session must have ('' for none, 'closed' for a released one),
# mode ('open' | 'keep' | 'close'), sequence, answer, state, stale at (epoch s), closed keep seconds, idle seconds,
# line, counter count n, n (field, delta) pairs ('c:' fields are the customer's), then settled entries (JSON each).
# Applies a request's changes if nothing changed since they were worked out; 0 otherwise (work them out again).
_APPLY = """
if redis.call('HGET', KEYS[2], 'v') ~= ARGV[1] then return 0 end
if (redis.call('HGET', KEYS[3], 'v') or '') ~= ARGV[2] then return 0 end
local seq = redis.call('HGET', KEYS[1], 'seq') or ''
if redis.call('HGET', KEYS[1], 'closed') == '1' then seq = 'closed' end
if seq ~= ARGV[3] then return 0 end
local n = tonumber(ARGV[12])
for i = 0, n - 1 do
  local name, delta = ARGV[13 + 2 * i], tonumber(ARGV[14 + 2 * i])
  if string.sub(name, 1, 2) == 'c:' then
    redis.call('HINCRBY', KEYS[3], string.sub(name, 3), delta)
  else
    redis.call('HINCRBY', KEYS[2], name, delta)
  end
end
redis.call('HINCRBY', KEYS[2], 'v', 1)
redis.call('HINCRBY', KEYS[3], 'v', 1)
local mode = ARGV[4]
if mode == 'open' then
  redis.call('HINCRBY', KEYS[2], 'open', 1)
  redis.call('HINCRBY', KEYS[3], 'open', 1)
  redis.call('HSET', KEYS[1], 'line', ARGV[11])
end
redis.call('HSET', KEYS[1], 'seq', ARGV[5], 'ans', ARGV[6], 'state', ARGV[7])
if mode == 'close' then
  redis.call('HSET', KEYS[1], 'closed', '1')
  if seq ~= '' then
    redis.call('HINCRBY', KEYS[2], 'open', -1)
    redis.call('HINCRBY', KEYS[3], 'open', -1)
  end
  redis.call('ZREM', KEYS[4], KEYS[1])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[9]))
else
  redis.call('ZADD', KEYS[4], tonumber(ARGV[8]), KEYS[1])
  redis.call('PERSIST', KEYS[1])
end
local settled = 0
for i = 13 + 2 * n, #ARGV do
  redis.call('XADD', KEYS[5], '*', 'e', ARGV[i])
  settled = settled + 1
end
for _, key in ipairs({KEYS[2], KEYS[3]}) do
  if settled > 0 then redis.call('HINCRBY', key, 'pend', settled) end
  local open = tonumber(redis.call('HGET', key, 'open') or '0')
  local pend = tonumber(redis.call('HGET', key, 'pend') or '0')
  if open <= 0 and pend <= 0 then redis.call('EXPIRE', key, tonumber(ARGV[10])) else redis.call('PERSIST', key) end
end
return 1
"""

# KEYS: settled; ARGV: namespace, idle seconds, then (entry id, line, customer) triples. The ledger wrote these
# entries: each leaves the stream (once), and its account's and its customer's pending counts.
_ACK = """
local done = 0
for i = 3, #ARGV, 3 do
  if redis.call('XACK', KEYS[1], 'ledger', ARGV[i]) == 1 then
    redis.call('XDEL', KEYS[1], ARGV[i])
    for _, key in ipairs({ARGV[1] .. 'acc:' .. ARGV[i + 1], ARGV[1] .. 'cus:' .. ARGV[i + 2]}) do
      if redis.call('EXISTS', key) == 1 then
        local pend = redis.call('HINCRBY', key, 'pend', -1)
        local open = tonumber(redis.call('HGET', key, 'open') or '0')
        if open <= 0 and pend <= 0 then redis.call('EXPIRE', key, tonumber(ARGV[2])) end
      end
    end
    done = done + 1
  end
end
return done
"""

# KEYS: account; ARGV: micro-units. A top-up of a line whose account exists: the line is prepaid, with that much more.
_TOP_UP = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'pp', '1')
redis.call('HINCRBY', KEYS[1], 'm', tonumber(ARGV[1]))
redis.call('HINCRBY', KEYS[1], 'v', 1)
return 1
"""

# KEYS: account; ARGV: namespace, then (field, delta) pairs. Use rated from records (not asked for online) counted by
# a line's account held here, and its spending by the customer's; 0 when no account is held.
_RECORDED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local customer = ARGV[1] .. 'cus:' .. (redis.call('HGET', KEYS[1], 'cus') or '')
for i = 2, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], tonumber(ARGV[i + 1]))
  if ARGV[i] == 'sp' and redis.call('EXISTS', customer) == 1 then
    redis.call('HINCRBY', customer, 'sp', tonumber(ARGV[i + 1]))
    redis.call('HINCRBY', customer, 'v', 1)
  end
end
redis.call('HINCRBY', KEYS[1], 'v', 1)
return 1
"""

# KEYS: an account or a customer; ARGV: the cap in micro-units ('' for none), its action. A spend cap set or removed.
_SET_CAP = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '' then
  redis.call('HDEL', KEYS[1], 'cap', 'cap_a')
else
  redis.call('HSET', KEYS[1], 'cap', ARGV[1], 'cap_a', ARGV[2])
end
redis.call('HINCRBY', KEYS[1], 'v', 1)
return 1
"""


class StoreNotDurable(RuntimeError):
    """The Redis given for charging does not keep what it is told (no append-only file written on every change)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


@dataclass(frozen=True)
class Snapshot:
    """A session and its line's account as read together, with the account's version to apply changes against."""

    session: dict[str, str]
    account: dict[str, str]
    customer: dict[str, str]

    @property
    def version(self) -> str | None:
        return self.account.get("v")


@dataclass(frozen=True)
class Change:
    """What one request changes, applied only if the account and the session are still as read."""

    version: str
    customer_version: str
    session_seq: str  # '' for a new session, 'closed' for a released one
    mode: str  # open | keep | close
    sequence: int
    answer: str
    state: str
    stale_at: int
    counters: Mapping[str, int]
    settled: Sequence[str]


class ChargingStore:
    """The Redis keys and scripts of online charging, under one namespace."""

    def __init__(
        self, client: redis.Redis, *, namespace: str = "mvne:chg:", idle_s: int = 30, closed_keep_s: int = 600
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.idle_s = idle_s
        self.closed_keep_s = closed_keep_s
        self.expiry_key = f"{namespace}expiry"
        self.settled_key = f"{namespace}settled"
        self._read = client.register_script(_READ)
        self._init = client.register_script(_INIT)
        self._apply = client.register_script(_APPLY)
        self._ack = client.register_script(_ACK)
        self._top_up = client.register_script(_TOP_UP)
        self._set_cap = client.register_script(_SET_CAP)
        self._recorded = client.register_script(_RECORDED)

    def check_durable(self) -> None:
        """Raise `StoreNotDurable` unless Redis writes every change to its append-only file before answering."""
        config = {**self.client.config_get("appendonly"), **self.client.config_get("appendfsync")}
        if config.get("appendonly") != "yes" or config.get("appendfsync") != "always":
            raise StoreNotDurable(
                "online charging needs a Redis with appendonly yes and appendfsync always "
                f"(this one has appendonly {config.get('appendonly')}, appendfsync {config.get('appendfsync')})"
            )

    def session_key(self, session_id: str) -> str:
        digest = hashlib.blake2b(session_id.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
        return f"{self.namespace}ses:{digest}"

    def account_key(self, line_id: str) -> str:
        return f"{self.namespace}acc:{line_id}"

    def read(self, session_key: str, line_id: str | None) -> Snapshot:
        """The session and its line's account (the session's own line when `line_id` is None)."""
        session, account, customer = self._read(keys=[session_key], args=[self.namespace, line_id or ""])
        return Snapshot(_pairs(session), _pairs(account), _pairs(customer))

    def customer_key(self, customer_id: str) -> str:
        return f"{self.namespace}cus:{customer_id}"

    def init_account(
        self, line_id: str, fields: Mapping[str, str | int], customer_id: str, customer: Mapping[str, str | int]
    ) -> bool:
        """Write a line's account and its customer's hash read from PostgreSQL, each unless another request wrote it
        first (a customer's is shared by its lines' accounts)."""
        args: list[Any] = [self.idle_s, len(fields)]
        for name, value in (*fields.items(), *customer.items()):
            args += [name, value]
        return bool(self._init(keys=[self.account_key(line_id), self.customer_key(customer_id)], args=args))

    def apply(self, session_key: str, line_id: str, customer_id: str, change: Change) -> bool:
        """Apply a request's changes atomically; False when the account or the session changed meanwhile."""
        args: list[Any] = [
            change.version,
            change.customer_version,
            change.session_seq,
            change.mode,
            change.sequence,
            change.answer,
            change.state,
            change.stale_at,
            self.closed_keep_s,
            self.idle_s,
            line_id,
            len(change.counters),
        ]
        for name, delta in change.counters.items():
            args += [name, delta]
        args.extend(change.settled)
        keys = [
            session_key,
            self.account_key(line_id),
            self.customer_key(customer_id),
            self.expiry_key,
            self.settled_key,
        ]
        return bool(self._apply(keys=keys, args=args))

    def top_up(self, line_id: str, micro: int) -> bool:
        """Money added to a line whose account is held here (now prepaid); False when none is held."""
        return bool(self._top_up(keys=[self.account_key(line_id)], args=[micro]))

    def stale_sessions(self, now: float, limit: int = 500) -> list[str]:
        """Keys of open sessions no request renewed in time."""
        return [_text(k) for k in self.client.zrangebyscore(self.expiry_key, "-inf", now, start=0, num=limit)]

    def session_of_key(self, session_key: str) -> dict[str, str]:
        return {_text(k): _text(v) for k, v in (self.client.hgetall(session_key) or {}).items()}

    # The ledger's side of the stream.

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.settled_key, LEDGER_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def take_settled(self, consumer: str, count: int, *, reclaim_after_ms: int) -> list[tuple[str, dict[str, Any]]]:
        """Settled usage to write: entries another ledger took and left unacknowledged too long, then new ones."""
        self.ensure_group()
        _, claimed, *_ = self.client.xautoclaim(
            self.settled_key, LEDGER_GROUP, consumer, min_idle_time=reclaim_after_ms, start_id="0-0", count=count
        )
        entries = list(claimed)
        if len(entries) < count:
            fresh: Any = self.client.xreadgroup(
                LEDGER_GROUP, consumer, {self.settled_key: ">"}, count=count - len(entries)
            )
            for _, items in fresh or []:
                entries.extend(items)
        taken = []
        for entry_id, fields in entries:
            if fields:  # an entry deleted since it was read comes back empty
                body = fields.get(b"e", fields.get("e"))
                taken.append((_text(entry_id), json.loads(_text(body))))
        return taken

    def acknowledge(self, entries: Sequence[tuple[str, str, str]]) -> int:
        """The ledger wrote these (entry id, line, customer) entries: they leave the stream and their accounts' and
        customers' pending counts."""
        if not entries:
            return 0
        args: list[Any] = [self.namespace, self.idle_s]
        for entry in entries:
            args += list(entry)
        return int(self._ack(keys=[self.settled_key], args=args))

    def recorded(self, line_id: str, counters: Mapping[str, int]) -> bool:
        """Use rated from records, counted by the line's account if one is held here; False when none is."""
        args: list[Any] = [self.namespace]
        for name, delta in counters.items():
            args += [name, delta]
        return bool(self._recorded(keys=[self.account_key(line_id)], args=args))

    def set_cap(self, key: str, micro: int | None, action: str) -> bool:
        """A spend cap set (or removed, `micro` None) on an account or a customer held here; False when none is."""
        return bool(self._set_cap(keys=[key], args=["" if micro is None else micro, action]))

    def backlog(self) -> int:
        """Settled entries not written yet (including those a ledger holds)."""
        return int(self.client.xlen(self.settled_key))
