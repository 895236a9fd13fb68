//! Chat rooms: who is in them, who may speak, and who may moderate, as rules without
//! I/O. The hub applies a rule, then sends what follows from it.
//!
//! Ranks, highest first: a site admin (`hub::Config::admins`), the room's owner (who
//! created it), its moderators (appointed by the owner), members. A moderator acts on
//! members only; the owner on moderators too; nobody acts on the owner but an admin.
//! Nobody acts on themselves. A room made by a session's chat room (`?session_key=`)
//! has no owner: admins moderate it, and the moderators they appoint.
//!
//! Membership is by user, not by connection: a user who joins from one tab is in the
//! room in every tab, and leaves it when their last connection closes, on every node.
//!
//! With several nodes, a room is one document in the shared store ([`Room::to_doc`]),
//! changed by one rule at a time on a [`Rooms::one`] view of it; each node keeps a
//! mirror of every room in a [`Rooms`] for the reads (who may send, who hears).

use super::UserId;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};

/// Why a room operation was refused; each maps to an `error` code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomError {
    /// No room by that name.
    NoRoom,
    /// `create` of a room that exists.
    Exists,
    /// `create` when `max_rooms` rooms exist.
    TooMany,
    /// The user is banned from the room.
    Banned,
    /// The user is not in the room.
    NotMember,
    /// The user is muted in the room.
    Muted,
    /// The user's rank does not allow the action.
    Forbidden,
    /// The action's target is not someone it applies to (not a member, not banned...).
    NoTarget,
    /// The user owns as many rooms as one may.
    TooManyOwned,
    /// The room's bans or moderators are as many as it may hold.
    ListFull,
}

impl RoomError {
    /// The `error` event's code.
    pub fn code(&self) -> &'static str {
        match self {
            RoomError::NoRoom => "no_room",
            RoomError::Exists => "room_exists",
            RoomError::TooMany => "too_many_rooms",
            RoomError::Banned => "banned",
            RoomError::NotMember => "not_member",
            RoomError::Muted => "muted",
            RoomError::Forbidden => "forbidden",
            RoomError::NoTarget => "no_target",
            RoomError::TooManyOwned => "too_many_owned",
            RoomError::ListFull => "list_full",
        }
    }

    /// The `error` event's message.
    pub fn message(&self) -> &'static str {
        match self {
            RoomError::NoRoom => "there is no such room",
            RoomError::Exists => "a room with that name exists",
            RoomError::TooMany => "no more rooms can be created",
            RoomError::Banned => "you are banned from this room",
            RoomError::NotMember => "you are not in this room",
            RoomError::Muted => "you are muted in this room",
            RoomError::Forbidden => "your rank in this room does not allow that",
            RoomError::NoTarget => "that user is not someone this applies to",
            RoomError::TooManyOwned => "you own as many rooms as one may",
            RoomError::ListFull => "this room's list is full",
        }
    }
}

/// A moderation action on a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Out of the room; may join again.
    Kick,
    /// Out of the room, and may not join again until unbanned.
    Ban,
    /// May join again.
    Unban,
    /// Stays, but may not send.
    Mute,
    /// May send again.
    Unmute,
    /// Becomes a moderator (owner only).
    Appoint,
    /// Is a moderator no more (owner only).
    Dismiss,
}

impl Action {
    /// The action named by a `chat.<name>` method, if it is one.
    pub fn from_method(name: &str) -> Option<Action> {
        Some(match name {
            "kick" => Action::Kick,
            "ban" => Action::Ban,
            "unban" => Action::Unban,
            "mute" => Action::Mute,
            "unmute" => Action::Unmute,
            "appoint" => Action::Appoint,
            "dismiss" => Action::Dismiss,
            _ => return None,
        })
    }

    /// The event its target and the room's members are told with (`chat.kicked`...).
    pub fn event(self) -> &'static str {
        match self {
            Action::Kick => "chat.kicked",
            Action::Ban => "chat.banned",
            Action::Unban => "chat.unbanned",
            Action::Mute => "chat.muted",
            Action::Unmute => "chat.unmuted",
            Action::Appoint => "chat.appointed",
            Action::Dismiss => "chat.dismissed",
        }
    }
}

/// One room.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Room {
    /// Who created it; `None` for a room made by a session's chat room.
    pub owner: Option<UserId>,
    /// Appointed by the owner.
    pub moderators: BTreeSet<UserId>,
    /// Users in the room now.
    pub members: BTreeSet<UserId>,
    /// Users who may not join.
    pub banned: BTreeSet<UserId>,
    /// Users who may not send.
    pub muted: BTreeSet<UserId>,
}

impl Room {
    /// 3 for an admin, 2 for the owner, 1 for a moderator, 0 for anyone else.
    fn rank(&self, user: &str, admin: bool) -> u8 {
        if admin {
            3
        } else if self.owner.as_deref() == Some(user) {
            2
        } else if self.moderators.contains(user) {
            1
        } else {
            0
        }
    }
}

impl Room {
    /// The room as a document of the shared store, with its `version`:
    /// `{"v", "owner", "moderators", "members", "banned", "muted"}`.
    pub fn to_doc(&self, version: u64) -> Value {
        json!({
            "v": version,
            "owner": self.owner,
            "moderators": self.moderators,
            "members": self.members,
            "banned": self.banned,
            "muted": self.muted,
        })
    }

    /// What is left of a removed room: its version alone, `{"v"}`.
    pub fn tombstone(version: u64) -> Value {
        json!({ "v": version })
    }

    /// Reads a document written by [`Room::to_doc`] or [`Room::tombstone`]: its version,
    /// and the room (`None` for a tombstone). `None` when it is neither.
    pub fn from_doc(doc: &Value) -> Option<(u64, Option<Room>)> {
        let version = doc.get("v")?.as_u64()?;
        if doc.get("members").is_none() {
            return Some((version, None));
        }
        let set = |key: &str| -> Option<BTreeSet<UserId>> {
            match doc.get(key) {
                None | Some(Value::Null) => Some(BTreeSet::new()),
                Some(Value::Array(a)) => a.iter().map(|u| u.as_str().map(UserId::from)).collect(),
                Some(_) => None,
            }
        };
        let owner = match doc.get("owner") {
            None | Some(Value::Null) => None,
            Some(Value::String(o)) => Some(UserId::from(o.as_str())),
            Some(_) => return None,
        };
        let room = Room {
            owner,
            moderators: set("moderators")?,
            members: set("members")?,
            banned: set("banned")?,
            muted: set("muted")?,
        };
        Some((version, Some(room)))
    }
}

/// Rooms and the rules that change them: every room of the site (a node's mirror), or
/// one room with the counts of the others ([`Rooms::one`]).
#[derive(Debug)]
pub struct Rooms {
    rooms: HashMap<String, Room>,
    limits: Limits,
    /// Rooms that count against [`Limits::rooms`] but are not in `rooms`.
    other_rooms: usize,
    /// Rooms each user owns that are not in `rooms`.
    owned_elsewhere: HashMap<UserId, usize>,
}

/// How much the rooms may hold, so that no client can grow them without end. With
/// several nodes, they count for the whole site.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Rooms at once.
    pub rooms: usize,
    /// Rooms one user owns.
    pub owned_per_user: usize,
    /// Bans, and moderators, of one room (each list apart).
    pub listed_per_room: usize,
}

impl Rooms {
    /// No rooms yet.
    pub fn new(limits: Limits) -> Self {
        Rooms {
            rooms: HashMap::new(),
            limits,
            other_rooms: 0,
            owned_elsewhere: HashMap::new(),
        }
    }

    /// A view of one room, `name` (`None`: there is none), for one rule to change:
    /// `other_rooms` and `owned_elsewhere` count the rooms beside it.
    pub fn one(
        limits: Limits,
        name: &str,
        room: Option<Room>,
        other_rooms: usize,
        owned_elsewhere: HashMap<UserId, usize>,
    ) -> Self {
        let mut rooms = HashMap::new();
        if let Some(room) = room {
            rooms.insert(name.to_owned(), room);
        }
        Rooms {
            rooms,
            limits,
            other_rooms,
            owned_elsewhere,
        }
    }

    /// Sets room `name` to `room`, or removes it (`None`): a mirror following the store.
    pub fn put(&mut self, name: &str, room: Option<Room>) {
        match room {
            Some(room) => self.rooms.insert(name.to_owned(), room),
            None => self.rooms.remove(name),
        };
    }

    /// How many rooms each user owns, but room `except`.
    pub fn owned_counts(&self, except: &str) -> HashMap<UserId, usize> {
        let mut counts: HashMap<UserId, usize> = HashMap::new();
        for (name, r) in &self.rooms {
            if let Some(owner) = r.owner.as_ref().filter(|_| name != except) {
                *counts.entry(owner.clone()).or_default() += 1;
            }
        }
        counts
    }

    /// The rooms `user` is in, sorted.
    pub fn rooms_of(&self, user: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.members.contains(user))
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    fn count(&self) -> usize {
        self.rooms.len() + self.other_rooms
    }

    /// A room, if it exists.
    pub fn get(&self, room: &str) -> Option<&Room> {
        self.rooms.get(room)
    }

    /// What bounds these rooms.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Every room, with its name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Room)> {
        self.rooms.iter()
    }

    /// The names of every room, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.rooms.keys().cloned().collect();
        names.sort();
        names
    }

    /// `owner` creates `room` and is its first member.
    pub fn create(&mut self, room: &str, owner: &str) -> Result<(), RoomError> {
        if self.rooms.contains_key(room) {
            return Err(RoomError::Exists);
        }
        if self.count() >= self.limits.rooms {
            return Err(RoomError::TooMany);
        }
        let owned = self
            .rooms
            .values()
            .filter(|r| r.owner.as_deref() == Some(owner))
            .count()
            + self.owned_elsewhere.get(owner).copied().unwrap_or(0);
        if owned >= self.limits.owned_per_user {
            return Err(RoomError::TooManyOwned);
        }
        let mut r = Room {
            owner: Some(UserId::from(owner)),
            ..Room::default()
        };
        r.members.insert(UserId::from(owner));
        self.rooms.insert(room.to_owned(), r);
        Ok(())
    }

    /// `user` joins `room`; with `open`, a missing room is made with no owner (a
    /// session's chat room). Returns whether the user was not in it before.
    pub fn join(&mut self, room: &str, user: &str, open: bool) -> Result<bool, RoomError> {
        if !self.rooms.contains_key(room) {
            if !open {
                return Err(RoomError::NoRoom);
            }
            if self.count() >= self.limits.rooms {
                return Err(RoomError::TooMany);
            }
            self.rooms.insert(room.to_owned(), Room::default());
        }
        let r = self.rooms.get_mut(room).ok_or(RoomError::NoRoom)?;
        if r.banned.contains(user) {
            return Err(RoomError::Banned);
        }
        Ok(r.members.insert(UserId::from(user)))
    }

    /// `user` leaves `room`. A room with no owner is forgotten when it is empty.
    pub fn leave(&mut self, room: &str, user: &str) -> Result<(), RoomError> {
        let r = self.rooms.get_mut(room).ok_or(RoomError::NoRoom)?;
        if !r.members.remove(user) {
            return Err(RoomError::NotMember);
        }
        self.forget_if_done(room);
        Ok(())
    }

    fn forget_if_done(&mut self, room: &str) {
        if self
            .rooms
            .get(room)
            .is_some_and(|r| r.owner.is_none() && r.members.is_empty() && r.banned.is_empty())
        {
            self.rooms.remove(room);
        }
    }

    /// Whether `user` may read `room`'s members and history: they are in it.
    pub fn check_member(&self, room: &str, user: &str) -> Result<&Room, RoomError> {
        let r = self.rooms.get(room).ok_or(RoomError::NoRoom)?;
        if !r.members.contains(user) {
            return Err(RoomError::NotMember);
        }
        Ok(r)
    }

    /// Whether `user` may send to `room`: they are in it and not muted.
    pub fn check_send(&self, room: &str, user: &str) -> Result<&Room, RoomError> {
        let r = self.check_member(room, user)?;
        if r.muted.contains(user) {
            return Err(RoomError::Muted);
        }
        Ok(r)
    }

    /// Whether `actor` may delete messages of `room`: a moderator or above.
    pub fn check_moderator(&self, room: &str, actor: &str, admin: bool) -> Result<(), RoomError> {
        let r = self.rooms.get(room).ok_or(RoomError::NoRoom)?;
        if r.rank(actor, admin) == 0 {
            return Err(RoomError::Forbidden);
        }
        Ok(())
    }

    /// `actor` applies `action` to `target` in `room`; `admin` says whether each of
    /// them is a site admin.
    pub fn moderate(
        &mut self,
        room: &str,
        actor: &str,
        action: Action,
        target: &str,
        admin: impl Fn(&str) -> bool,
    ) -> Result<(), RoomError> {
        let r = self.rooms.get_mut(room).ok_or(RoomError::NoRoom)?;
        let mine = r.rank(actor, admin(actor));
        let theirs = r.rank(target, admin(target));
        let needed = match action {
            Action::Appoint | Action::Dismiss => 2,
            _ => 1,
        };
        // Acting on oneself, or on someone of one's own rank or above, is refused: a
        // muted moderator does not unmute themselves, nor a banned owner unban.
        if mine < needed || theirs >= mine || actor == target {
            return Err(RoomError::Forbidden);
        }
        let full = |list: &BTreeSet<UserId>| {
            !list.contains(target) && list.len() >= self.limits.listed_per_room
        };
        if (action == Action::Ban && full(&r.banned))
            || (action == Action::Appoint && full(&r.moderators))
        {
            return Err(RoomError::ListFull);
        }
        let done = match action {
            Action::Kick => r.members.remove(target),
            Action::Ban => {
                r.moderators.remove(target);
                r.members.remove(target);
                r.banned.insert(UserId::from(target))
            }
            Action::Unban => r.banned.remove(target),
            Action::Mute => r.members.contains(target) && r.muted.insert(UserId::from(target)),
            Action::Unmute => r.muted.remove(target),
            Action::Appoint => {
                !r.banned.contains(target) && r.moderators.insert(UserId::from(target))
            }
            Action::Dismiss => r.moderators.remove(target),
        };
        if !done {
            return Err(RoomError::NoTarget);
        }
        // A kick or an unban may leave an ownerless room with nobody in it.
        self.forget_if_done(room);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_admin(_: &str) -> bool {
        false
    }

    fn lobby() -> Rooms {
        let mut rooms = Rooms::new(Limits {
            rooms: 10,
            owned_per_user: 10,
            listed_per_room: 100,
        });
        rooms.create("lobby", "owner").unwrap();
        for u in ["mod", "ann", "bob"] {
            assert!(rooms.join("lobby", u, false).unwrap());
        }
        rooms
            .moderate("lobby", "owner", Action::Appoint, "mod", no_admin)
            .unwrap();
        rooms
    }

    #[test]
    fn create_join_leave() {
        let mut rooms = lobby();
        assert_eq!(rooms.create("lobby", "ann"), Err(RoomError::Exists));
        assert_eq!(rooms.join("nowhere", "ann", false), Err(RoomError::NoRoom));
        assert_eq!(rooms.join("lobby", "ann", false), Ok(false));
        rooms.leave("lobby", "ann").unwrap();
        assert_eq!(rooms.leave("lobby", "ann"), Err(RoomError::NotMember));
        assert_eq!(rooms.check_send("lobby", "ann"), Err(RoomError::NotMember));
        // An owned room stays when empty; an open one goes.
        assert!(rooms.join("open", "ann", true).unwrap());
        assert_eq!(rooms.rooms_of("ann"), ["open"]);
        assert_eq!(rooms.rooms_of("bob"), ["lobby"]);
        rooms.leave("open", "ann").unwrap();
        assert!(rooms.get("open").is_none());
        for u in ["owner", "mod", "bob"] {
            rooms.leave("lobby", u).unwrap();
        }
        assert!(rooms.get("lobby").is_some());
    }

    #[test]
    fn a_room_crosses_the_store_as_it_was() {
        let rooms = lobby();
        let r = rooms.get("lobby").unwrap().clone();
        let doc: Value = serde_json::from_str(&r.to_doc(7).to_string()).unwrap();
        assert_eq!(Room::from_doc(&doc), Some((7, Some(r))));
        assert_eq!(Room::from_doc(&Room::tombstone(8)), Some((8, None)));
        let open = Room::default();
        assert_eq!(Room::from_doc(&open.to_doc(1)), Some((1, Some(open))));
        for bad in [
            json!({}),
            json!({"v": "1"}),
            json!({"v": 1, "members": "ann"}),
            json!({"v": 1, "members": [1]}),
            json!({"v": 1, "members": [], "owner": 5}),
        ] {
            assert_eq!(Room::from_doc(&bad), None, "{bad}");
        }
    }

    #[test]
    fn one_room_counts_the_others() {
        let limits = Limits {
            rooms: 3,
            owned_per_user: 2,
            listed_per_room: 100,
        };
        let owned = HashMap::from([(UserId::from("ann"), 2)]);
        let mut view = Rooms::one(limits, "c", None, 1, owned.clone());
        assert_eq!(view.create("c", "ann"), Err(RoomError::TooManyOwned));
        view.create("c", "bob").unwrap();
        let mut full = Rooms::one(limits, "d", None, 3, owned);
        assert_eq!(full.create("d", "bob"), Err(RoomError::TooMany));
        assert_eq!(full.join("d", "bob", true), Err(RoomError::TooMany));
        // A room that exists is not counted again.
        let mut lobby = Rooms::one(limits, "lobby", Some(Room::default()), 3, HashMap::new());
        assert_eq!(lobby.join("lobby", "bob", true), Ok(true));
    }

    #[test]
    fn room_count_is_bounded() {
        let mut rooms = Rooms::new(Limits {
            rooms: 2,
            owned_per_user: 10,
            listed_per_room: 100,
        });
        rooms.create("a", "u").unwrap();
        rooms.join("b", "u", true).unwrap();
        assert_eq!(rooms.create("c", "u"), Err(RoomError::TooMany));
        assert_eq!(rooms.join("c", "u", true), Err(RoomError::TooMany));
    }

    #[test]
    fn ban_keeps_out_until_unban() {
        let mut rooms = lobby();
        rooms
            .moderate("lobby", "mod", Action::Ban, "ann", no_admin)
            .unwrap();
        assert!(!rooms.get("lobby").unwrap().members.contains("ann"));
        assert_eq!(rooms.join("lobby", "ann", false), Err(RoomError::Banned));
        rooms
            .moderate("lobby", "mod", Action::Unban, "ann", no_admin)
            .unwrap();
        assert_eq!(rooms.join("lobby", "ann", false), Ok(true));
    }

    #[test]
    fn mute_stops_sending_until_unmute() {
        let mut rooms = lobby();
        rooms
            .moderate("lobby", "owner", Action::Mute, "bob", no_admin)
            .unwrap();
        assert_eq!(rooms.check_send("lobby", "bob"), Err(RoomError::Muted));
        assert!(rooms.check_send("lobby", "ann").is_ok());
        rooms
            .moderate("lobby", "mod", Action::Unmute, "bob", no_admin)
            .unwrap();
        assert!(rooms.check_send("lobby", "bob").is_ok());
    }

    #[test]
    fn ranks_decide_who_acts_on_whom() {
        let mut rooms = lobby();
        // Members do not moderate.
        assert_eq!(
            rooms.moderate("lobby", "ann", Action::Kick, "bob", no_admin),
            Err(RoomError::Forbidden)
        );
        assert_eq!(
            rooms.check_moderator("lobby", "ann", false),
            Err(RoomError::Forbidden)
        );
        // Moderators act on members, not on each other, the owner or themselves.
        assert_eq!(
            rooms.moderate("lobby", "mod", Action::Kick, "owner", no_admin),
            Err(RoomError::Forbidden)
        );
        assert_eq!(
            rooms.moderate("lobby", "mod", Action::Mute, "mod", no_admin),
            Err(RoomError::Forbidden)
        );
        assert_eq!(
            rooms.moderate("lobby", "mod", Action::Appoint, "ann", no_admin),
            Err(RoomError::Forbidden)
        );
        rooms
            .moderate("lobby", "mod", Action::Kick, "bob", no_admin)
            .unwrap();
        assert_eq!(
            rooms.moderate("lobby", "mod", Action::Kick, "bob", no_admin),
            Err(RoomError::NoTarget)
        );
        // The owner acts on moderators; an admin on the owner.
        rooms
            .moderate("lobby", "owner", Action::Dismiss, "mod", no_admin)
            .unwrap();
        assert_eq!(
            rooms.moderate("lobby", "owner", Action::Kick, "owner", no_admin),
            Err(RoomError::Forbidden)
        );
        rooms
            .moderate("lobby", "root", Action::Mute, "owner", |u| u == "root")
            .unwrap();
        assert!(rooms.check_moderator("lobby", "root", true).is_ok());
        // A banned user cannot be appointed.
        rooms
            .moderate("lobby", "owner", Action::Ban, "ann", no_admin)
            .unwrap();
        assert_eq!(
            rooms.moderate("lobby", "owner", Action::Appoint, "ann", no_admin),
            Err(RoomError::NoTarget)
        );
    }

    #[test]
    fn one_user_owns_few_rooms_and_lists_are_bounded() {
        let mut rooms = Rooms::new(Limits {
            rooms: 100,
            owned_per_user: 2,
            listed_per_room: 2,
        });
        rooms.create("a", "ann").unwrap();
        rooms.create("b", "ann").unwrap();
        assert_eq!(rooms.create("c", "ann"), Err(RoomError::TooManyOwned));
        rooms.create("c", "bob").unwrap();
        for u in ["x", "y"] {
            rooms
                .moderate("a", "ann", Action::Ban, u, no_admin)
                .unwrap();
        }
        assert_eq!(
            rooms.moderate("a", "ann", Action::Ban, "z", no_admin),
            Err(RoomError::ListFull)
        );
        for u in ["p", "q"] {
            rooms
                .moderate("a", "ann", Action::Appoint, u, no_admin)
                .unwrap();
        }
        assert_eq!(
            rooms.moderate("a", "ann", Action::Appoint, "r", no_admin),
            Err(RoomError::ListFull)
        );
        // An unban makes room again.
        rooms
            .moderate("a", "ann", Action::Unban, "x", no_admin)
            .unwrap();
        rooms
            .moderate("a", "ann", Action::Ban, "z", no_admin)
            .unwrap();
    }

    #[test]
    fn an_ownerless_room_left_empty_by_a_kick_is_forgotten() {
        let mut rooms = lobby();
        assert!(rooms.join("open", "ann", true).unwrap());
        rooms
            .moderate("open", "root", Action::Kick, "ann", |u| u == "root")
            .unwrap();
        assert!(rooms.get("open").is_none());
    }

    #[test]
    fn nobody_acts_on_themselves_or_on_an_admin_below_them() {
        let mut rooms = lobby();
        let admins = |u: &str| u == "root";
        assert!(rooms.join("lobby", "root", false).unwrap());
        // An owner does not kick or mute a site admin who is in the room.
        for action in [Action::Kick, Action::Mute, Action::Ban] {
            assert_eq!(
                rooms.moderate("lobby", "owner", action, "root", admins),
                Err(RoomError::Forbidden)
            );
        }
        // A muted moderator does not unmute themselves; an admin does.
        rooms
            .moderate("lobby", "owner", Action::Mute, "mod", no_admin)
            .unwrap();
        assert_eq!(
            rooms.moderate("lobby", "mod", Action::Unmute, "mod", no_admin),
            Err(RoomError::Forbidden)
        );
        rooms
            .moderate("lobby", "root", Action::Unmute, "mod", admins)
            .unwrap();
        // An admin does not act on themselves either.
        assert_eq!(
            rooms.moderate("lobby", "root", Action::Kick, "root", admins),
            Err(RoomError::Forbidden)
        );
        // A banned owner stays owner but cannot unban themselves.
        rooms
            .moderate("lobby", "root", Action::Ban, "owner", admins)
            .unwrap();
        assert_eq!(
            rooms.moderate("lobby", "owner", Action::Unban, "owner", no_admin),
            Err(RoomError::Forbidden)
        );
    }
}
