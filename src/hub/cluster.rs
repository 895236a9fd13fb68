//! Several nodes on one store: the rooms they share, who holds which user, and which
//! nodes are alive.
//!
//! **Rooms.** A room is one document of the shared store ([`crate::store::Shared`]),
//! `{ns}:rooms:<name>`, listed in `{ns}:rooms`. A change reads it, applies one rule of
//! [`super::rooms`] to a [`Rooms::one`] view of it, and writes it back with its version
//! one higher, atomically (in Redis: `WATCH`, `MULTI`, `EXEC`, again if another node
//! changed it in between). The same transaction publishes the new state on the bus
//! (`{"node", "room", "v", "state"}`), so every node's mirror of every room follows the
//! changes in the order they were made. Reads (who may send, who hears, the userlist)
//! are on the mirror and cost no round trip. A mirror that may have missed changes (the
//! bus subscription was lost) loads every room again.
//!
//! **Presence.** A node tells the store which users it holds (`{ns}:held:<node>`, and
//! `{ns}:holders:<user>`). When a user's last connection on a node closes, the node lets
//! go of the user; when no node holds them any more, they leave their rooms, on every
//! node, as on one.
//!
//! **Liveness.** Each node keeps `{ns}:node:<id>` alive with a time to live of
//! [`Config::node_timeout`], renewed four times within it, and looks for nodes whose key
//! lapsed: one survivor buries each (takes it off `{ns}:nodes` and lets go of all it
//! held), and takes the users nobody holds now out of their rooms. A node killed outright
//! is gone from rooms within `node_timeout` and a quarter. A node buries nobody until
//! its own heartbeats have reached the store for a whole `node_timeout`: after the
//! store was out of reach, every heartbeat lapsed, and the living must beat again
//! first.
//!
//! **A store that lost its data** (a Redis restarted empty, a replica promoted before it
//! had every write) no longer lists this node: its next heartbeat finds that out, and
//! the node writes back the users it holds and every room of its mirror the store has
//! no document of.
//!
//! `ns` is the bus channel in braces, `{switchboard}`: a Redis hash tag, so that all of
//! this stays in one slot of a Redis Cluster.

use super::bus::BusMessage;
use super::*;
use crate::store::{Decision, Write};
use rooms::Room;

/// The index of the room documents.
const ROOMS: &str = "rooms";

/// How long a removed room's version stays in the store, so that a room made again under
/// its name carries on from it while mirrors may still hear of the old one.
const TOMBSTONE_TTL: Duration = Duration::from_secs(24 * 3600);

/// Work the liveness thread does again until it succeeds.
#[derive(Default)]
pub(super) struct Pending {
    /// Load every room again: the mirror may have missed changes.
    reload: bool,
    /// Tell the store again which users this node holds: a hold or a release failed,
    /// or another node took this one for dead.
    resync: bool,
    /// Write back the rooms of the mirror that the store does not have.
    restore: bool,
    /// Users who must leave their rooms, which the store refused earlier.
    leaves: BTreeSet<UserId>,
    /// Since when every heartbeat of this node reached the store; `None` after one
    /// failed.
    beating_since: Option<Instant>,
}

/// What a change of one room came to.
struct Changed<T> {
    result: T,
    /// The room after it, and its version.
    after: Option<Room>,
    version: u64,
}

impl Hub {
    /// `text` from another node or a client, cut to the server's
    /// `max_logged_input_bytes` for a log line.
    pub(super) fn clip<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let max = self
            .server()
            .map_or(256, |s| s.config().max_logged_input_bytes);
        crate::server::log::clip(text, max)
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes `room` with `change`, for every node, and returns what it returned with
    /// the members right after the change (see [`Hub::send_userlist`]). `change` may run
    /// more than once, when another node changed the room at the same time.
    pub(super) fn change_room<T>(
        &self,
        room: &str,
        change: impl Fn(&mut Rooms) -> Result<T, RoomError>,
    ) -> Result<(T, Vec<UserId>), Error> {
        let announce = self.stores.bus.reaches_other_nodes();
        let mut outcome: Option<Result<Changed<T>, RoomError>> = None;
        let mut decide = |text: Option<&str>, count: usize| -> Decision {
            let (version, before) = text
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
                .and_then(|doc| Room::from_doc(&doc))
                .unwrap_or((0, None));
            let (limits, owned) = {
                let st = self.state();
                (st.rooms.limits(), st.rooms.owned_counts(room))
            };
            let others = count.saturating_sub(usize::from(before.is_some()));
            let mut view = Rooms::one(limits, room, before.clone(), others, owned);
            let result = match change(&mut view) {
                Ok(result) => result,
                Err(e) => {
                    outcome = Some(Err(e));
                    return None;
                }
            };
            let after = view.get(room).cloned();
            if after == before {
                outcome = Some(Ok(Changed {
                    result,
                    after,
                    version,
                }));
                return None;
            }
            let version = version + 1;
            let doc = match &after {
                Some(r) => r.to_doc(version),
                None => Room::tombstone(version),
            };
            let write = match &after {
                Some(_) => Write::Put(doc.to_string()),
                None => Write::Remove {
                    tombstone: doc.to_string(),
                    ttl: TOMBSTONE_TTL,
                },
            };
            let message = announce.then(|| {
                let state = if after.is_some() { doc } else { Value::Null };
                let m = BusMessage::Room {
                    node: self.node.clone(),
                    room: room.to_owned(),
                    version,
                    state,
                };
                (self.config.channel.clone(), m.to_json())
            });
            outcome = Some(Ok(Changed {
                result,
                after,
                version,
            }));
            Some((write, message))
        };
        self.stores
            .shared
            .update(&self.ns, ROOMS, room, &mut decide)?;
        let changed = match outcome {
            Some(result) => result?,
            None => {
                return Err(Error::Store(store::Error::Invalid(
                    "the room was not read".into(),
                )))
            }
        };
        let members = changed
            .after
            .as_ref()
            .map(|r| r.members.iter().cloned().collect())
            .unwrap_or_default();
        self.mirror(room, changed.version, changed.after, true);
        Ok((changed.result, members))
    }

    /// Sets this node's mirror of `room` to `state` at `version`, unless it holds a
    /// later version. `own`: this node made the change; a removal it made is
    /// remembered until its own message comes back, so that an older change heard
    /// in between does not bring the room back.
    fn mirror(&self, room: &str, version: u64, state: Option<Room>, own: bool) {
        let mut st = self.state();
        let held = st.room_versions.get(room).or(st.room_tombstones.get(room));
        if version == 0 || held.is_some_and(|v| *v >= version) {
            return;
        }
        match state {
            Some(r) => {
                st.rooms.put(room, Some(r));
                st.room_versions.insert(room.to_owned(), version);
                st.room_tombstones.remove(room);
            }
            None => {
                st.rooms.put(room, None);
                st.room_versions.remove(room);
                if own {
                    st.room_tombstones.insert(room.to_owned(), version);
                }
            }
        }
    }

    /// Another node changed `room` (the bus).
    pub(super) fn room_changed(&self, room: &str, version: u64, state: &Value) {
        let state = match state {
            Value::Null => None,
            doc => match Room::from_doc(doc) {
                Some((_, Some(r))) => Some(r),
                _ => {
                    self.count("bus_invalid");
                    self.log(
                        Level::Warn,
                        None,
                        "invalid room state on the bus",
                        &[("room", &self.clip(room))],
                    );
                    return;
                }
            },
        };
        self.mirror(room, version, state, false);
    }

    /// This node's own message came back on the bus: a removal it made is heard by
    /// all now, and needs remembering no more.
    pub(super) fn own_echo(&self, payload: &str) {
        if self.state().room_tombstones.is_empty() {
            return;
        }
        if let Some(BusMessage::Room {
            room,
            version,
            state: Value::Null,
            ..
        }) = BusMessage::parse(payload)
        {
            let mut st = self.state();
            if st.room_tombstones.get(&room).is_some_and(|v| *v <= version) {
                st.room_tombstones.remove(&room);
            }
        }
    }

    /// Loads every room from the store into the mirror: at start, and after the bus
    /// was lost. A room the store does not list is removed from the mirror unless a
    /// change of it was heard while loading.
    pub(super) fn load_rooms(&self) -> Result<usize, store::Error> {
        let before = self.state().room_versions.clone();
        let docs = self.stores.shared.documents(&self.ns, ROOMS)?;
        let mut loaded = HashMap::new();
        for (name, text) in docs {
            let doc = serde_json::from_str::<Value>(&text).ok();
            if let Some((version, Some(room))) = doc.as_ref().and_then(Room::from_doc) {
                loaded.insert(name, (version, room));
            }
        }
        let count = loaded.len();
        let mut st = self.state();
        st.room_tombstones.clear();
        let gone: Vec<String> = st
            .room_versions
            .iter()
            .filter(|(name, v)| !loaded.contains_key(*name) && before.get(*name) == Some(*v))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            st.rooms.put(&name, None);
            st.room_versions.remove(&name);
        }
        for (name, (version, room)) in loaded {
            if st.room_versions.get(&name).is_none_or(|v| *v < version) {
                st.rooms.put(&name, Some(room));
                st.room_versions.insert(name, version);
            }
        }
        Ok(count)
    }

    /// The bus is back after an outage: room changes published in between were
    /// missed, so every room is loaded again, after the heartbeat has found out
    /// whether the store lost what it held (a Redis restarted without its data).
    pub(super) fn bus_restored(&self) {
        self.tick(false);
        if let Err(e) = self.load_rooms() {
            self.log(
                Level::Warn,
                None,
                "rooms could not be loaded again; trying again",
                &[("error", &e)],
            );
            self.pending().reload = true;
        }
    }

    /// Writes each room of the mirror that the store has no document of (not even a
    /// removed room's tombstone) back into it, at the mirror's version: after the
    /// store lost its data. A room another node wrote back first is left as it is.
    /// Returns how many this node wrote.
    fn restore_rooms(&self) -> Result<usize, store::Error> {
        let mirror: Vec<(String, u64, Room)> = {
            let st = self.state();
            st.rooms
                .iter()
                .map(|(name, r)| {
                    let version = st.room_versions.get(name).copied().unwrap_or(1);
                    (name.clone(), version, r.clone())
                })
                .collect()
        };
        let mut written = 0;
        for (name, version, room) in mirror {
            let wrote = self
                .stores
                .shared
                .update(&self.ns, ROOMS, &name, &mut |text, _| {
                    text.is_none()
                        .then(|| (Write::Put(room.to_doc(version).to_string()), None))
                })?;
            written += usize::from(wrote);
        }
        Ok(written)
    }

    /// `user` has, or is about to have, a connection on this node: the store hears
    /// that this node holds them, before the connection is told it signed in, so that
    /// a delivery sent to the user from then on finds this node among their holders.
    pub(super) fn hold_user(&self, user: &UserId) {
        if let Err(e) = self.stores.shared.hold(&self.ns, &self.node, &[user]) {
            self.presence_failed(&e);
        }
    }

    /// If `user` has no connection left on this node, this node lets go of them, and
    /// when no node holds them any more they leave every room.
    pub(super) fn user_may_be_gone(&self, user: &UserId) {
        if !self.state().identity.connections_of(user).is_empty() {
            return;
        }
        let gone = match self.stores.shared.release(&self.ns, &self.node, &[user]) {
            Ok(gone) => gone,
            Err(e) => {
                self.presence_failed(&e);
                return;
            }
        };
        // A connection of theirs came meanwhile, and its hold may have gone first.
        if !self.state().identity.connections_of(user).is_empty() {
            self.hold_user(user);
            return;
        }
        // Let go of by this node; gone when no other node holds them either.
        if gone.iter().any(|g| g == user.as_str()) {
            self.leave_everywhere(user);
        }
    }

    /// `user` leaves every room they are in, on every node; the members of each are
    /// told. What the store refuses is tried again by the liveness thread.
    pub(super) fn leave_everywhere(&self, user: &UserId) {
        let rooms = self.state().rooms.rooms_of(user);
        for room in rooms {
            match self.change_room(&room, |r| r.leave(&room, user)) {
                Ok(((), members)) => self.send_userlist(&room, members),
                // Not in it after all (another node took them out first).
                Err(Error::Room(_)) => {}
                Err(e) => {
                    self.log(
                        Level::Warn,
                        None,
                        "a user who left could not be taken out of a room; trying again",
                        &[("room", &self.clip(&room)), ("error", &e)],
                    );
                    self.pending().leaves.insert(user.clone());
                }
            }
        }
    }

    fn presence_failed(&self, e: &store::Error) {
        self.count("presence_errors");
        self.log(
            Level::Warn,
            None,
            "the store could not be told which users this node holds; trying again",
            &[("error", e)],
        );
        self.pending().resync = true;
    }

    /// Tells the store again exactly which users this node holds.
    fn resync(&self) -> Result<(), store::Error> {
        let here: BTreeSet<UserId> = self.state().identity.users().into_iter().collect();
        let held: BTreeSet<UserId> = self
            .stores
            .shared
            .held(&self.ns, &self.node)?
            .into_iter()
            .map(UserId::from)
            .collect();
        let hold: Vec<&str> = here.difference(&held).map(|u| u.as_str()).collect();
        self.stores.shared.hold(&self.ns, &self.node, &hold)?;
        let release: Vec<&str> = held.difference(&here).map(|u| u.as_str()).collect();
        let gone = self.stores.shared.release(&self.ns, &self.node, &release)?;
        for user in gone {
            let user = UserId::from(user);
            if self.state().identity.connections_of(&user).is_empty() {
                self.leave_everywhere(&user);
            }
        }
        Ok(())
    }

    /// One round of the liveness thread: the heartbeat, work left from failures, and
    /// the burial of lapsed nodes.
    fn tick(&self, first: bool) {
        match self
            .stores
            .shared
            .beat(&self.ns, &self.node, self.config.node_timeout)
        {
            Ok(true) => {}
            Ok(false) if first => {}
            Ok(false) => {
                // Another node buried this one (its heartbeat lapsed), or the store
                // lost its data (a Redis restarted empty, a replica promoted before it
                // had everything): what this node knows goes back in.
                self.count("node_revived");
                self.log(
                    Level::Warn,
                    None,
                    "this node was not listed in the store; writing back its users and the rooms the store lost",
                    &[],
                );
                let mut p = self.pending();
                p.resync = true;
                p.restore = true;
            }
            Err(_) => {
                self.pending().beating_since = None;
                return;
            }
        }
        let (reload, resync, restore, leaves, beating_since) = {
            let mut p = self.pending();
            let since = *p.beating_since.get_or_insert_with(Instant::now);
            (
                p.reload,
                p.resync,
                p.restore,
                std::mem::take(&mut p.leaves),
                since,
            )
        };
        if restore {
            match self.restore_rooms() {
                Ok(n) => {
                    if n > 0 {
                        self.log(
                            Level::Warn,
                            None,
                            "rooms the store had lost written back from this node's mirror",
                            &[("rooms", &n)],
                        );
                    }
                    self.pending().restore = false;
                }
                Err(_) => return,
            }
        }
        if reload && self.load_rooms().is_ok() {
            self.pending().reload = false;
        }
        if resync && self.resync().is_ok() {
            self.pending().resync = false;
        }
        for user in leaves {
            if self.state().identity.connections_of(&user).is_empty() {
                self.leave_everywhere(&user);
            }
        }
        // A node's heartbeat may have lapsed only because the store was out of reach
        // for all: nobody is buried until this node has reached the store for a whole
        // node_timeout, in which every live node has beaten again.
        if beating_since.elapsed() < self.config.node_timeout {
            return;
        }
        let Ok(nodes) = self.stores.shared.nodes(&self.ns) else {
            return;
        };
        let lapsed = nodes
            .into_iter()
            .filter(|(node, alive)| !alive && *node != self.node);
        for (node, _) in lapsed {
            match self.stores.shared.bury(&self.ns, &node) {
                Ok(Some(gone)) => {
                    self.count("nodes_buried");
                    self.log(
                        Level::Warn,
                        None,
                        "a node's heartbeat lapsed; its users leave their rooms",
                        &[("node", &node), ("users", &gone.len())],
                    );
                    for user in gone {
                        let user = UserId::from(user);
                        if self.state().identity.connections_of(&user).is_empty() {
                            self.leave_everywhere(&user);
                        }
                    }
                }
                Ok(None) => {}
                Err(_) => return,
            }
        }
    }

    /// Joins the nodes on the store: the first heartbeat and the rooms, before any
    /// connection is taken, then the liveness thread. A store that is down now is
    /// tried again by that thread.
    pub(super) fn join_cluster(self: &Arc<Self>) -> Result<(), store::Error> {
        self.tick(true);
        if let Err(e) = self.load_rooms() {
            self.log(
                Level::Warn,
                None,
                "rooms could not be loaded from the store; trying again",
                &[("error", &e)],
            );
            self.pending().reload = true;
        }
        let weak = Arc::downgrade(self);
        let every = self.config.node_timeout / 4;
        thread::Builder::new()
            .name("hub-nodes".into())
            .stack_size(256 * 1024)
            .spawn(move || loop {
                thread::sleep(every);
                let Some(hub) = weak.upgrade() else { return };
                hub.tick(false);
            })
            .map(|_| ())
            .map_err(|e| store::Error::Unavailable(format!("no thread for the hub: {e}")))
    }
}
