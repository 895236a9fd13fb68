//! Identity and messaging: connections, sessions and users, and the modules that
//! carry messages between them. The hub knows users, not sockets: it reaches a
//! connection through the server's handle, by id.
//!
//! Built so far: [`identity`], the three maps and their invariants.

pub mod identity;
