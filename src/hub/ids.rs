//! The hub's ids as types, so that a session id cannot be passed where a user id is
//! meant. Both are text as the site wrote it (a number sent by a client, `23`, is the
//! text `"23"`); both are written into JSON as strings. Connection ids are the
//! server's ([`crate::server::ConnId`]).

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The id for `text`, as given.
            pub fn new(text: impl Into<String>) -> Self {
                $name(text.into())
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        /// Maps keyed by the id are looked up by text too.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                $name(text.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(text: String) -> Self {
                $name(text)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

text_id! {
    /// A user, as the site names it: the value under a session's key, `?userId`, the
    /// name in a chat session key. One user may hold several sessions.
    UserId
}

text_id! {
    /// A session the site logged in: presented by a connection, written by the site
    /// under its key. Several connections (tabs) may share one.
    SessionId
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn ids_are_their_text_in_json_in_maps_and_in_print() {
        let u = UserId::new("23");
        assert_eq!(serde_json::to_string(&u).unwrap(), r#""23""#);
        assert_eq!(u.to_string(), "23");
        assert!(u == "23");
        let map: HashMap<UserId, u8> = [(u.clone(), 1)].into();
        assert_eq!(map.get("23"), Some(&1));
        assert_eq!(SessionId::from("s").as_str(), "s");
    }
}
