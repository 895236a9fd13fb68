//! `switchboard broker`: the WSBroker contract. Each client event goes to the site's
//! HTTP back end as a form POST; the back end answers with commands (`send`, `close`,
//! `session`, `list`, `log`) run on the connections its `match` selects. Commands may
//! also be POSTed to the WebSocket port from allowed addresses. docs/BROKER.md is the
//! contract as built.

pub mod backend;
pub mod commands;
