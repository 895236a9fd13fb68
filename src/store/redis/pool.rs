//! The pool of connections for commands: at most `size`, each used by one call at a
//! time, waited for within the call's deadline.

use super::Error;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A pooled connection: the epoch it was made in, the line, and the socket timeout
/// set on it.
pub(super) type Pooled = (u64, redis::Connection, Option<Duration>);

/// Connections for commands: at most `size`, each used by one call at a time.
pub(super) struct Pool {
    size: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Pooled>,
    /// Connections in use or idle, and places taken by calls about to connect.
    taken: usize,
    /// Calls waiting for a place: a place given back wakes one (a wake-up is a system
    /// call, not spent when nobody waits).
    waiting: usize,
}

/// One place in the pool, held by one call: a connection, or none yet (the call
/// connects). Dropping it gives the place back, with its connection if still good.
pub(super) struct Slot<'a> {
    pool: &'a Pool,
    pub(super) conn: Option<Pooled>,
}

impl Pool {
    pub(super) fn new(size: usize) -> Pool {
        Pool {
            size,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                taken: 0,
                waiting: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place, with an idle connection made since `epoch` if there is one; waits
    /// for one to be given back until `deadline`.
    pub(super) fn take(&self, deadline: Instant, epoch: u64) -> Result<Slot<'_>, Error> {
        let mut state = self.lock();
        loop {
            while let Some(pooled) = state.idle.pop() {
                if pooled.0 >= epoch {
                    return Ok(Slot {
                        pool: self,
                        conn: Some(pooled),
                    });
                }
                // Made before Redis was last found dead: never used again.
                state.taken -= 1;
            }
            if state.taken < self.size {
                state.taken += 1;
                return Ok(Slot {
                    pool: self,
                    conn: None,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Unavailable(format!(
                    "all {} Redis connections busy",
                    self.size
                )));
            }
            state.waiting += 1;
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            state.waiting -= 1;
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        match self.conn.take() {
            Some(pooled) => state.idle.push(pooled),
            None => state.taken -= 1,
        }
        let wake = state.waiting > 0;
        drop(state);
        if wake {
            self.pool.freed.notify_one();
        }
    }
}
