//! The state nodes share ([`Shared`]) on Redis: room documents changed under
//! `WATCH`/`MULTI`/`EXEC`, and the nodes' heartbeats, holders and answers, some of it in
//! Lua scripts so that each change is atomic.

use super::{RedisStore, Shared};
use crate::store::{Decision, Error, Write};
use std::time::{Duration, Instant};

/// How many times [`Shared::update`] reads and decides again when another node changed
/// the document in between, before it gives up: contention, not an outage.
const MAX_TRIES: usize = 32;

/// [`Shared::release`]: KEYS are the node's held set, then each name's holders;
/// ARGV the node, then the names. Atomic, so that two nodes letting go of the same name
/// at once cannot both see the other still holding it.
const RELEASE: &str = r"
local gone = {}
for i = 2, #KEYS do
  redis.call('SREM', KEYS[1], ARGV[i])
  redis.call('SREM', KEYS[i], ARGV[1])
  if redis.call('SCARD', KEYS[i]) == 0 then gone[#gone + 1] = ARGV[i] end
end
return gone
";

/// [`Shared::bury`]: KEYS are the node list and the node's held set; ARGV the node and
/// the prefix of the holders' keys. Only the caller whose SREM took the node off the
/// list goes on (the others get nil), so exactly one survivor lets go of what it held.
/// The holders' keys are not declared: they are in the same hash slot as KEYS.
const BURY: &str = r"
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return false end
local gone = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local k = ARGV[2] .. name
  redis.call('SREM', k, ARGV[1])
  if redis.call('SCARD', k) == 0 then gone[#gone + 1] = name end
end
redis.call('DEL', KEYS[2])
return gone
";

/// [`Shared::publish_to_holders`]: KEYS are the names' holders sets; ARGV the channel
/// prefix, this node, and the payload.
const PUBLISH_TO_HOLDERS: &str = r"
local n = 0
for _, node in ipairs(redis.call('SUNION', unpack(KEYS))) do
  if node ~= ARGV[2] then
    redis.call('PUBLISH', ARGV[1] .. node, ARGV[3])
    n = n + 1
  end
end
return n
";

impl Shared for RedisStore {
    fn update(
        &self,
        ns: &str,
        index: &str,
        name: &str,
        decide: &mut dyn FnMut(Option<&str>, usize) -> Decision,
    ) -> Result<bool, Error> {
        let index_key = format!("{ns}:{index}");
        let key = format!("{index_key}:{name}");
        let outcome = self.run(|conn| {
            for _ in 0..MAX_TRIES {
                redis::cmd("WATCH")
                    .arg(&key)
                    .arg(&index_key)
                    .query::<()>(conn)?;
                let (text, count): (Option<String>, usize) = redis::pipe()
                    .cmd("GET")
                    .arg(&key)
                    .cmd("SCARD")
                    .arg(&index_key)
                    .query(conn)?;
                let Some((write, announce)) = decide(text.as_deref(), count) else {
                    redis::cmd("UNWATCH").query::<()>(conn)?;
                    return Ok(Some(false));
                };
                let mut pipe = redis::pipe();
                pipe.atomic();
                match write {
                    Write::Put(text) => {
                        pipe.cmd("SET").arg(&key).arg(text).ignore();
                        pipe.cmd("SADD").arg(&index_key).arg(name).ignore();
                    }
                    Write::Remove { tombstone, ttl } => {
                        pipe.cmd("SET")
                            .arg(&key)
                            .arg(tombstone)
                            .arg("PX")
                            .arg(ttl.as_millis().max(1) as u64)
                            .ignore();
                        pipe.cmd("SREM").arg(&index_key).arg(name).ignore();
                    }
                }
                if let Some((channel, payload)) = announce {
                    pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
                }
                // EXEC answers nil when a watched key changed: read and decide again.
                let done: Option<()> = pipe.query(conn)?;
                if done.is_some() {
                    return Ok(Some(true));
                }
            }
            Ok(None)
        })?;
        outcome.ok_or_else(|| {
            Error::Unavailable(format!(
                "{key} changed by other nodes {MAX_TRIES} times in a row"
            ))
        })
    }

    fn documents(&self, ns: &str, index: &str) -> Result<Vec<(String, String)>, Error> {
        let index_key = format!("{ns}:{index}");
        let names: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(&index_key))?;
        let mut out = Vec::with_capacity(names.len());
        for chunk in names.chunks(500) {
            let mut mget = redis::cmd("MGET");
            for name in chunk {
                mget.arg(format!("{index_key}:{name}"));
            }
            let texts: Vec<Option<String>> = self.query(&mget)?;
            out.extend(
                chunk
                    .iter()
                    .zip(texts)
                    .filter_map(|(name, text)| Some((name.clone(), text?))),
            );
        }
        Ok(out)
    }

    fn beat(&self, ns: &str, node: &str, ttl: Duration) -> Result<bool, Error> {
        let (added,): (i64,) = self.run(|conn| {
            redis::pipe()
                .cmd("SET")
                .arg(format!("{ns}:node:{node}"))
                .arg(1)
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .ignore()
                .cmd("SADD")
                .arg(format!("{ns}:nodes"))
                .arg(node)
                .query(conn)
        })?;
        Ok(added == 0)
    }

    fn nodes(&self, ns: &str) -> Result<Vec<(String, bool)>, Error> {
        let nodes: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(format!("{ns}:nodes")))?;
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for n in &nodes {
            pipe.cmd("EXISTS").arg(format!("{ns}:node:{n}"));
        }
        let alive: Vec<i64> = self.run(|conn| pipe.query(conn))?;
        Ok(nodes
            .into_iter()
            .zip(alive.into_iter().map(|a| a > 0))
            .collect())
    }

    fn hold(&self, ns: &str, node: &str, names: &[&str]) -> Result<(), Error> {
        if names.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("SADD")
            .arg(format!("{ns}:held:{node}"))
            .arg(names)
            .ignore();
        for name in names {
            pipe.cmd("SADD")
                .arg(format!("{ns}:holders:{name}"))
                .arg(node)
                .ignore();
        }
        self.run(|conn| pipe.query(conn))
    }

    fn release(&self, ns: &str, node: &str, names: &[&str]) -> Result<Vec<String>, Error> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut eval = redis::cmd("EVAL");
        eval.arg(RELEASE)
            .arg(names.len() + 1)
            .arg(format!("{ns}:held:{node}"));
        for name in names {
            eval.arg(format!("{ns}:holders:{name}"));
        }
        eval.arg(node).arg(names);
        self.query(&eval)
    }

    fn held(&self, ns: &str, node: &str) -> Result<Vec<String>, Error> {
        self.query(redis::cmd("SMEMBERS").arg(format!("{ns}:held:{node}")))
    }

    fn publish_to_holders(
        &self,
        ns: &str,
        names: &[&str],
        node: &str,
        prefix: &str,
        payload: &str,
    ) -> Result<usize, Error> {
        if names.is_empty() {
            return Ok(0);
        }
        let mut eval = redis::cmd("EVAL");
        eval.arg(PUBLISH_TO_HOLDERS).arg(names.len());
        for name in names {
            eval.arg(format!("{ns}:holders:{name}"));
        }
        eval.arg(prefix).arg(node).arg(payload);
        self.query(&eval)
    }

    fn answer(&self, ns: &str, key: &str, text: &str, ttl: Duration) -> Result<(), Error> {
        let key = format!("{ns}:{key}");
        self.run(|conn| {
            redis::pipe()
                .cmd("RPUSH")
                .arg(&key)
                .arg(text)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(ttl.as_millis().max(1) as u64)
                .ignore()
                .query(conn)
        })
    }

    /// `BLPOP`, each call waiting at most a quarter of the store's deadline, so that
    /// the socket's timeout (half of it) never cuts a wait short.
    fn gather(
        &self,
        ns: &str,
        key: &str,
        count: usize,
        wait: Duration,
    ) -> Result<Vec<String>, Error> {
        let key = format!("{ns}:{key}");
        let until = Instant::now() + wait;
        let mut out = Vec::new();
        while out.len() < count {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let block = left
                .min(self.config.timeout / 4)
                .max(Duration::from_millis(10));
            let got: Option<(String, String)> = self.query(
                redis::cmd("BLPOP")
                    .arg(&key)
                    .arg(format!("{:.3}", block.as_secs_f64())),
            )?;
            if let Some((_, text)) = got {
                out.push(text);
            }
        }
        Ok(out)
    }

    fn bury(&self, ns: &str, node: &str) -> Result<Option<Vec<String>>, Error> {
        self.query(
            redis::cmd("EVAL")
                .arg(BURY)
                .arg(2)
                .arg(format!("{ns}:nodes"))
                .arg(format!("{ns}:held:{node}"))
                .arg(node)
                .arg(format!("{ns}:holders:")),
        )
    }
}
