//! The Redis store's subscription threads end once the store is dropped, even on
//! channels where nothing is published. Alone in its binary, so that no other test's
//! threads are counted.

mod common;

use common::redis::RedisServer;
use common::{wait_until, TIMEOUT};
use switchboard::store::redis::{Config, RedisStore};
use switchboard::store::{Bus, Sessions};

/// Threads of this process whose name starts with `redis-sub`.
fn subscription_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("redis-sub"))
        .count()
}

#[test]
fn subscription_threads_end_with_the_store() {
    let redis = RedisServer::start();
    assert_eq!(subscription_threads(), 0);
    let store = RedisStore::new(Config::new(&redis.url())).unwrap();
    let a = store.subscribe("quiet-a").unwrap();
    let b = store.subscribe("quiet-b").unwrap();
    let keys = store.watch().unwrap();
    assert!(wait_until(TIMEOUT, || subscription_threads() == 3));
    drop(store);
    assert!(
        wait_until(TIMEOUT, || subscription_threads() == 0),
        "{} left",
        subscription_threads()
    );
    // Their receivers see the end.
    assert!(a.recv().is_err() && b.recv().is_err() && keys.recv().is_err());
}
