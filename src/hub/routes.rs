//! The admin listener's routes: the site's back end writes sessions, sends
//! notifications and reads listings and stats over HTTP.

use super::*;

impl Hub {
    pub(super) fn admin_route(
        &self,
        server: &Server,
        request: &AdminRequest,
    ) -> Option<AdminResponse> {
        let ok = |body: Value| Some(AdminResponse::new(200, body));
        let body_json = || serde_json::from_slice::<Value>(request.body);
        match (request.method, request.path) {
            ("GET", "/connections") => ok(self.listing(server)),
            ("GET", "/users") => {
                let st = self.state();
                ok(Value::Array(
                    st.identity
                        .users()
                        .iter()
                        .map(|u| {
                            let conns = st.identity.connections_of(u);
                            let sessions: BTreeSet<SessionId> = conns
                                .iter()
                                .filter_map(|c| st.identity.member(*c)?.session.clone())
                                .collect();
                            json!({ "userId": u, "sessions": sessions, "connections": conns })
                        })
                        .collect(),
                ))
            }
            ("GET", "/sessions") => {
                let st = self.state();
                ok(Value::Array(
                    st.identity
                        .sessions()
                        .iter()
                        .map(|s| {
                            let conns = st.identity.connections_of_session(s);
                            let user = conns
                                .first()
                                .and_then(|c| st.identity.member(*c)?.user.clone());
                            json!({
                                "sessionId": s,
                                "userId": user.as_deref().unwrap_or("__nouser__"),
                                "connections": conns,
                            })
                        })
                        .collect(),
                ))
            }
            ("GET", "/rooms") => {
                let names = self.state().rooms.names();
                ok(Value::Array(
                    names.iter().map(|r| self.room_view(r)).collect(),
                ))
            }
            ("GET", "/stats") => ok(self.stats()),
            ("GET", "/cluster/stats") => Some(self.cluster_route("stats", |answers| {
                let connections: u64 = answers
                    .iter()
                    .filter_map(|a| a.get("connections")?.as_u64())
                    .sum();
                json!({ "connections": connections, "nodes": answers })
            })),
            ("GET", "/cluster/connections") => Some(self.cluster_route("connections", |answers| {
                let mut all = Vec::new();
                let mut nodes = Vec::new();
                for a in answers {
                    let node = a.get("node").cloned().unwrap_or(Value::Null);
                    nodes.push(node.clone());
                    if let Some(Value::Array(list)) = a.get("connections") {
                        for c in list {
                            let mut c = c.clone();
                            c["node"] = node.clone();
                            all.push(c);
                        }
                    }
                }
                json!({ "connections": all, "nodes": nodes })
            })),
            ("POST", "/notify") => {
                let text = std::str::from_utf8(request.body).unwrap_or("");
                let Some((users, data)) = read_notification(text) else {
                    return Some(AdminResponse::error(
                        400,
                        "expected {\"users\": [..], \"data\": ..}",
                    ));
                };
                if self.config.keep_notifications {
                    return Some(match self.keep_notification(&users, &data) {
                        Ok(ids) => {
                            AdminResponse::new(202, json!({ "published": true, "ids": ids }))
                        }
                        Err(e) => AdminResponse::error(503, &e.to_string()),
                    });
                }
                Some(
                    match self
                        .stores
                        .bus
                        .publish(&self.config.notifications_channel, text)
                    {
                        Ok(()) => AdminResponse::new(202, json!({ "published": true })),
                        Err(e) => AdminResponse::error(503, &e.to_string()),
                    },
                )
            }
            ("POST", "/notice") => {
                let Ok(data) = body_json() else {
                    return Some(AdminResponse::error(400, "the body must be JSON"));
                };
                Some(match self.read::<Notice>(&data) {
                    Err(e) => AdminResponse::error(400, &e.to_string()),
                    Ok(n) => {
                        match self.publish(&n.users, "notice", &notice_event(&n, None), None) {
                            Ok(()) => AdminResponse::new(202, json!({ "published": true })),
                            Err(e) => AdminResponse::error(503, &e.to_string()),
                        }
                    }
                })
            }
            (method, path) if path.starts_with("/sessions/") => {
                let key = &path["/sessions/".len()..];
                let key = crate::form::parse_query(&format!("k={key}"))
                    .pop()
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                if key.is_empty() {
                    return Some(AdminResponse::error(400, "give a key: /sessions/<key>"));
                }
                Some(self.admin_session(method, &key, request))
            }
            _ => None,
        }
    }

    /// A route answered by every live node: `shape` makes the body of their answers,
    /// and `missing` names the nodes that did not answer in time.
    fn cluster_route(&self, what: &str, shape: impl FnOnce(&[Value]) -> Value) -> AdminResponse {
        match self.ask_all(what) {
            Ok(g) => {
                let mut body = shape(&g.answers);
                body["missing"] = json!(g.missing);
                AdminResponse::new(200, body)
            }
            Err(e) => AdminResponse::error(503, &e.to_string()),
        }
    }

    /// `PUT /sessions/<key>` (the body is the value; `?ttl=SECONDS`) and `DELETE`: for
    /// sites without Redis, the way a site writes its sessions.
    pub(super) fn admin_session(
        &self,
        method: &str,
        key: &str,
        request: &AdminRequest,
    ) -> AdminResponse {
        let sessions = &self.stores.sessions;
        let result = match method {
            "PUT" | "POST" => {
                let Ok(value) = std::str::from_utf8(request.body) else {
                    return AdminResponse::error(400, "the value must be UTF-8");
                };
                let ttl = match request.query.iter().find(|(k, _)| k == "ttl") {
                    None => None,
                    Some((_, v)) => match v.parse::<f64>() {
                        Ok(s) if s > 0.0 && s <= 366.0 * 86400.0 => {
                            Some(Duration::from_secs_f64(s))
                        }
                        _ => return AdminResponse::error(400, "ttl is a number of seconds"),
                    },
                };
                sessions
                    .set(key, value.trim_end_matches(['\r', '\n']), ttl)
                    .map(|()| json!({ "key": key, "set": true }))
            }
            "DELETE" => sessions
                .delete(key)
                .map(|d| json!({ "key": key, "deleted": d })),
            "GET" => sessions.get(key).map(|v| json!({ "key": key, "value": v })),
            _ => return AdminResponse::error(405, "GET, PUT or DELETE"),
        };
        match result {
            Ok(body) => AdminResponse::new(200, body),
            Err(e) => AdminResponse::error(503, &e.to_string()),
        }
    }
}
