//! The notice module: notifications to listed users, from the site or an admin.

use super::*;

impl Hub {
    /// `notice.send` `{"users": [..], "text": .., "data": ..}` from an admin (also
    /// `notice.notice` with `userId`, the earlier form).
    pub(super) fn notice_send(&self, ctx: &Call, data: &Value) -> Outcome {
        let from = self.admin_of(ctx)?;
        let notice: Notice = self.read(data)?;
        self.publish(
            &notice.users,
            "notice",
            &notice_event(&notice, Some(&from)),
            None,
        )?;
        ctx.reply(ctx.event(), json!({ "users": notice.users }));
        Ok(())
    }
}

impl Hub {
    /// The history stream of `user`'s kept notifications.
    pub(super) fn notification_stream(user: &str) -> String {
        format!("notifications:{user}")
    }

    /// A notification for `users` POSTed to the admin listener, with
    /// [`Config::keep_notifications`]: kept in each user's history, then delivered
    /// with its id. Returns each user's id.
    pub(super) fn keep_notification(
        &self,
        users: &[UserId],
        data: &Value,
    ) -> Result<serde_json::Map<String, Value>, Error> {
        let mut ids = serde_json::Map::new();
        for user in users {
            let entry = json!({ "time": now_iso8601(), "data": data });
            let id = self
                .stores
                .history
                .append(&Self::notification_stream(user), &entry)?
                .to_string();
            self.count("notifications");
            self.publish_kept(std::slice::from_ref(user), "message", data, Some(&id), None)?;
            ids.insert(user.to_string(), Value::String(id));
        }
        Ok(ids)
    }

    /// `notification.history` `{"after": id?, "limit": n?}`: this user's kept
    /// notifications, `{"id", "time", "data"}` each.
    pub(super) fn notification_history(&self, ctx: &Call, data: &Value) -> Outcome {
        let me = self.user_of(ctx)?;
        let NotificationHistory { page } = self.read(data)?;
        let list = self.history(&Self::notification_stream(&me), page)?;
        ctx.reply("notification.history", json!({ "messages": list }));
        Ok(())
    }
}

/// The `notice` event: from whom (none when the site sent it), when, and what.
pub(super) fn notice_event(notice: &Notice, from: Option<&UserId>) -> Value {
    json!({
        "from": from,
        "time": now_iso8601(),
        "text": notice.text,
        "data": notice.data,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::TestHub;
    use super::*;

    #[test]
    fn an_admin_notice_reaches_the_listed_users_only() {
        let t = TestHub::with_admin(&[(1, "root"), (2, "23"), (3, "other")]);
        t.call(1, "notice.send", json!({ "users": [23], "text": "hi" }))
            .unwrap();
        assert_eq!(t.take(1)[0].1, json!({ "users": ["23"] }));
        let got = t.take(2);
        assert_eq!(
            (got[0].0.as_str(), &got[0].1["text"]),
            ("notice", &json!("hi"))
        );
        assert_eq!(got[0].1["from"], "root");
        assert!(t.take(3).is_empty());
        let e = t
            .call(2, "notice.send", json!({ "users": [1], "text": "x" }))
            .unwrap_err();
        assert_eq!(e.code(), "not_admin");
        let e = t
            .call(1, "notice.send", json!({ "users": [23] }))
            .unwrap_err();
        assert_eq!(e.code(), "bad_request");
    }
}
