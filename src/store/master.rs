//! Where the Redis master is: one fixed address (`redis://host:port/db`), or whatever
//! Redis Sentinel says it is now (`redis-sentinel://host:port,host:port/name/db`), so
//! that a node follows a failover: when the master stops answering, or answers
//! `READONLY` (it was demoted to a replica), the store forgets it, and the next
//! connection asks the sentinels again. A master they name is checked with `ROLE`
//! before it is used.

use super::Error;
use std::sync::Mutex;
use std::time::Duration;

/// The Redis master of a store.
pub(super) enum Master {
    /// Always the same server.
    Fixed(redis::Client),
    /// Found through sentinels.
    Sentinel(Sentinel),
}

/// The sentinels to ask, the name of the master they watch, and the one found last.
pub(super) struct Sentinel {
    sentinels: Vec<String>,
    name: String,
    db: i64,
    current: Mutex<Option<redis::Client>>,
}

/// The scheme of a Sentinel URL.
const SENTINEL_SCHEME: &str = "redis-sentinel://";

impl Master {
    /// From a store URL: `redis://..` (any form the redis crate reads) or
    /// `redis-sentinel://host:port[,host:port...]/master-name[/db]`.
    pub(super) fn parse(url: &str) -> Result<Master, Error> {
        let Some(rest) = url.strip_prefix(SENTINEL_SCHEME) else {
            return redis::Client::open(url)
                .map(Master::Fixed)
                .map_err(|e| Error::Invalid(format!("{url}: {e}")));
        };
        let bad = |why: &str| Error::Invalid(format!("{url}: {why}"));
        let (hosts, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("give the master's name: redis-sentinel://host:port/name"))?;
        let sentinels: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        if sentinels.is_empty() {
            return Err(bad("give at least one sentinel, host:port"));
        }
        for s in &sentinels {
            let port = s.rsplit_once(':').map(|(_, p)| p);
            if port.is_none_or(|p| p.parse::<u16>().is_err()) {
                return Err(bad(&format!("{s} is not host:port")));
            }
        }
        let (name, db) = match path.split_once('/') {
            Some((name, db)) => (
                name,
                db.parse::<i64>().map_err(|_| bad("the db is a number"))?,
            ),
            None => (path, 0),
        };
        if name.is_empty() {
            return Err(bad("the master's name is empty"));
        }
        Ok(Master::Sentinel(Sentinel {
            sentinels,
            name: name.to_owned(),
            db,
            current: Mutex::new(None),
        }))
    }

    /// The database number.
    pub(super) fn db(&self) -> i64 {
        match self {
            Master::Fixed(client) => client.get_connection_info().redis_settings().db(),
            Master::Sentinel(s) => s.db,
        }
    }

    /// A client of the master as known now; through the sentinels when none is, each
    /// connection within `timeout`.
    pub(super) fn client(&self, timeout: Duration) -> Result<redis::Client, Error> {
        match self {
            Master::Fixed(client) => Ok(client.clone()),
            Master::Sentinel(s) => {
                if let Some(c) = s.current.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                    return Ok(c);
                }
                let found = s.ask(timeout)?;
                *s.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(found.clone());
                Ok(found)
            }
        }
    }

    /// The master did not answer, or is one no more: ask the sentinels next time.
    pub(super) fn forget(&self) {
        if let Master::Sentinel(s) = self {
            *s.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}

impl Sentinel {
    /// Asks each sentinel in turn for the master's address, and checks that the server
    /// there says it is the master.
    fn ask(&self, timeout: Duration) -> Result<redis::Client, Error> {
        let mut why = String::from("no sentinel answered");
        for sentinel in &self.sentinels {
            match self.ask_one(sentinel, timeout) {
                Ok(client) => return Ok(client),
                Err(e) => why = format!("sentinel {sentinel}: {e}"),
            }
        }
        Err(Error::Unavailable(why))
    }

    fn ask_one(&self, sentinel: &str, timeout: Duration) -> Result<redis::Client, String> {
        let client =
            redis::Client::open(format!("redis://{sentinel}/")).map_err(|e| e.to_string())?;
        let mut conn = client
            .get_connection_with_timeout(timeout)
            .map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.name)
            .query(&mut conn)
            .map_err(|e| e.to_string())?;
        let (host, port) = addr.ok_or_else(|| format!("no master named {}", self.name))?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let master = redis::Client::open(format!("redis://{host}:{port}/{}", self.db))
            .map_err(|e| e.to_string())?;
        let mut conn = master
            .get_connection_with_timeout(timeout)
            .map_err(|e| format!("master {host}:{port}: {e}"))?;
        conn.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let role: Vec<redis::Value> = redis::cmd("ROLE")
            .query(&mut conn)
            .map_err(|e| format!("master {host}:{port}: {e}"))?;
        match role.first() {
            Some(redis::Value::BulkString(r)) if r == b"master" => Ok(master),
            Some(redis::Value::SimpleString(r)) if r == "master" => Ok(master),
            _ => Err(format!("{host}:{port} is not a master (yet)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls() {
        let Ok(Master::Sentinel(s)) =
            Master::parse("redis-sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/2")
        else {
            panic!("not a sentinel URL");
        };
        assert_eq!(s.sentinels, ["127.0.0.1:26379", "127.0.0.1:26380"]);
        assert_eq!((s.name.as_str(), s.db), ("mymaster", 2));
        assert!(matches!(
            Master::parse("redis://127.0.0.1:6379/1"),
            Ok(Master::Fixed(_))
        ));
        for bad in [
            "redis-sentinel://127.0.0.1:26379",
            "redis-sentinel:///mymaster",
            "redis-sentinel://127.0.0.1/mymaster",
            "redis-sentinel://127.0.0.1:26379/",
            "redis-sentinel://127.0.0.1:26379/m/x",
        ] {
            assert!(Master::parse(bad).is_err(), "{bad}");
        }
    }
}
