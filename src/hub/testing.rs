//! The hub run in-process for its unit tests: the memory store, and a [`Sink`] that
//! records every frame and close instead of a server's connections.

use super::*;
use crate::store::Stores;

/// Every frame sent and every close started, in order.
#[derive(Default)]
pub(super) struct Recorder {
    sent: Mutex<Vec<(ConnId, Value)>>,
    closed: Mutex<Vec<(ConnId, u16)>>,
}

impl Sink for Recorder {
    fn send_text(&self, ids: &[ConnId], text: &str) -> usize {
        let v: Value = serde_json::from_str(text).expect("the hub sends JSON");
        let mut sent = self.sent.lock().unwrap();
        for id in ids {
            sent.push((*id, v.clone()));
        }
        ids.len()
    }

    fn close(&self, id: ConnId, code: u16, _reason: &str) {
        self.closed.lock().unwrap().push((id, code));
    }
}

/// A hub on the memory store whose frames go to a [`Recorder`].
pub(super) struct TestHub {
    pub(super) hub: Arc<Hub>,
    sink: Arc<Recorder>,
}

impl TestHub {
    pub(super) fn new(config: Config) -> TestHub {
        let hub = Hub::new(config, Stores::memory(100));
        let sink = Arc::new(Recorder::default());
        hub.attach_sink(sink.clone());
        TestHub { hub, sink }
    }

    /// A hub with `users` signed in, each on its connection id.
    pub(super) fn with_users(config: Config, users: &[(u64, &str)]) -> TestHub {
        let t = TestHub::new(config);
        for (id, user) in users {
            t.sign_in(*id, user);
        }
        t
    }

    /// A hub whose admin is `root`, with `users` signed in.
    pub(super) fn with_admin(users: &[(u64, &str)]) -> TestHub {
        let config = Config {
            admins: vec!["root".into()],
            ..Config::default()
        };
        TestHub::with_users(config, users)
    }

    /// Connection `id` opens and signs in as `user`, the way a client does: the site
    /// wrote the session, the client sends `authenticate`.
    pub(super) fn sign_in(&self, id: u64, user: &str) {
        let session = format!("s{id}");
        let id = ConnId(id);
        self.hub
            .stores
            .sessions
            .set(&format!("session-store-{session}"), user, None)
            .unwrap();
        self.hub.opened(id, &Claim::Anonymous, None).unwrap();
        self.call(id.get(), "authenticate", json!({ "sessionId": session }))
            .unwrap();
        let heard = self.take(id.get());
        assert_eq!(heard[0].0, "authenticated", "{heard:?}");
        assert_eq!(heard[0].1["userId"], user);
    }

    /// Handles `event` from connection `id`.
    pub(super) fn call(&self, id: u64, event: &str, data: Value) -> Result<(), Error> {
        let known = self.hub.handle(ConnId(id), event, &data)?;
        assert!(known, "no handler for {event}");
        Ok(())
    }

    /// What connection `id` was sent since the last call, as (event, data).
    pub(super) fn take(&self, id: u64) -> Vec<(String, Value)> {
        let mut sent = self.sink.sent.lock().unwrap();
        let (mine, rest): (Vec<_>, Vec<_>) = sent.drain(..).partition(|(to, _)| to.get() == id);
        *sent = rest;
        mine.into_iter()
            .map(|(_, v)| {
                (
                    v["event"].as_str().unwrap_or("").to_owned(),
                    v["data"].clone(),
                )
            })
            .collect()
    }

    /// The events connection `id` was sent since the last call, by name.
    pub(super) fn events(&self, id: u64) -> Vec<String> {
        self.take(id).into_iter().map(|(e, _)| e).collect()
    }

    /// The closes started, as (connection, code).
    pub(super) fn closes(&self) -> Vec<(u64, u16)> {
        let closed = self.sink.closed.lock().unwrap();
        closed.iter().map(|(id, code)| (id.get(), *code)).collect()
    }
}
