//! The notice module: notifications to listed users, from the site or an admin.

use super::*;

impl Hub {
    /// `notice.send` `{"users": [..], "text": .., "data": ..}` from an admin (also
    /// `notice.notice` with `userId`, the earlier form).
    pub(super) fn notice_send(&self, ctx: &Call, data: &Value) -> Outcome {
        let from = self.admin_of(ctx)?;
        let (users, notice) = self.read_notice(data, Some(&from))?;
        self.publish(&users, "notice", &notice, None)?;
        ctx.reply(ctx.event(), json!({ "users": users }));
        Ok(())
    }

    pub(super) fn read_notice(
        &self,
        data: &Value,
        from: Option<&str>,
    ) -> Result<(Vec<String>, Value), Error> {
        let users = user_list(data.get("users").or_else(|| data.get("userId")))
            .filter(|u| !u.is_empty())
            .ok_or_else(|| Error::BadRequest("\"users\" is required: a list of user ids".into()))?;
        let text = data.get("text").and_then(Value::as_str);
        if text.is_some_and(|t| t.chars().count() > self.config.max_text_chars) {
            return Err(Error::BadRequest("\"text\" is too long".into()));
        }
        if text.is_none() && data.get("data").is_none() {
            return Err(Error::BadRequest(
                "a notice needs \"text\" or \"data\"".into(),
            ));
        }
        let notice = json!({
            "from": from,
            "time": now_iso8601(),
            "text": text,
            "data": data.get("data"),
        });
        Ok((users, notice))
    }
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
