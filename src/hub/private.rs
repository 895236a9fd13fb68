//! The private module: messages between two users, kept in a history stream per pair.

use super::*;

impl Hub {
    pub(super) fn text_field(&self, data: &Value, name: &str) -> Result<String, Error> {
        let text = data
            .get(name)
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| Error::BadRequest(format!("\"{name}\" is required (text)")))?;
        if text.chars().count() > self.config.max_text_chars {
            return Err(Error::BadRequest(format!(
                "\"{name}\" is longer than {} characters",
                self.config.max_text_chars
            )));
        }
        Ok(text.to_owned())
    }

    /// The stream of two users' private messages, whatever the order of the two.
    pub(super) fn private_stream(a: &str, b: &str) -> String {
        let (x, y) = if a <= b { (a, b) } else { (b, a) };
        format!("private:{}:{x}:{y}", x.len())
    }

    pub(super) fn after_id(data: &Value, name: &str) -> Result<Option<EntryId>, Error> {
        match data.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| Error::BadRequest(format!("\"{name}\" is not a message id"))),
            Some(_) => Err(Error::BadRequest(format!("\"{name}\" is not a message id"))),
        }
    }

    /// `limit`: how many entries, 1 to [`Config::history_page`]; larger asks get a
    /// full page.
    pub(super) fn page(&self, data: &Value) -> Result<usize, Error> {
        match data.get("limit") {
            None | Some(Value::Null) => Ok(self.config.history_page),
            Some(v) => v
                .as_u64()
                .filter(|n| *n >= 1)
                .map(|n| (n as usize).min(self.config.history_page))
                .ok_or_else(|| Error::BadRequest("\"limit\" is a whole number from 1".into())),
        }
    }

    /// `private.send` `{"to": user, "message": text}`: to every connection of the
    /// recipient, a copy to the sender's other connections, kept in their history.
    pub(super) fn private_send(&self, ctx: &Call, data: &Value) -> Outcome {
        let from = self.user_of(ctx)?;
        let to = self.id_field(data, "to")?;
        let message = self.text_field(data, "message")?;
        let entry = json!({ "time": now_iso8601(), "user": from, "to": to, "message": message });
        let id = self
            .stores
            .history
            .append(&Self::private_stream(&from, &to), &entry)?;
        let mut sent = entry;
        sent["id"] = json!(id.to_string());
        let mut users = vec![from.clone()];
        if to != from {
            users.push(to);
        }
        self.publish(&users, "private.message", &sent, Some(ctx.id()))?;
        ctx.reply("private.send", sent);
        Ok(())
    }

    /// `private.history` `{"with": user, "after": id?, "limit": n?}`.
    pub(super) fn private_history(&self, ctx: &Call, data: &Value) -> Outcome {
        let me = self.user_of(ctx)?;
        let with = self.id_field(data, "with")?;
        let stream = Self::private_stream(&me, &with);
        let list = self.history(&stream, self.history_request(data)?)?;
        ctx.reply("private.history", json!({ "with": with, "messages": list }));
        Ok(())
    }

    /// Where a history request starts: after `after`, or else after `lastId`, or
    /// (none) at the last page.
    pub(super) fn resume_from(data: &Value) -> Result<Option<EntryId>, Error> {
        match data.get("after") {
            Some(v) if !v.is_null() => Self::after_id(data, "after"),
            _ => Self::after_id(data, "lastId"),
        }
    }

    /// A history request's `limit` and starting point, read before anything is done
    /// for it.
    pub(super) fn history_request(&self, data: &Value) -> Result<(usize, Option<EntryId>), Error> {
        Ok((self.page(data)?, Self::resume_from(data)?))
    }

    /// Entries of `stream` after `from`, or the last page, at most `limit`.
    pub(super) fn history(
        &self,
        stream: &str,
        (limit, from): (usize, Option<EntryId>),
    ) -> Result<Value, Error> {
        let list = match from {
            Some(after) => self.stores.history.after(stream, Some(after), limit)?,
            None => self.stores.history.last(stream, limit)?,
        };
        Ok(entries(list))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::TestHub;
    use super::*;

    #[test]
    fn a_private_message_reaches_every_connection_of_both_but_the_sender() {
        let t = TestHub::with_users(Config::default(), &[(1, "ann"), (2, "ann"), (3, "bob")]);
        t.call(1, "private.send", json!({ "to": "bob", "message": "hi" }))
            .unwrap();
        let answer = t.take(1);
        assert_eq!(
            answer.len(),
            1,
            "the sender hears its answer only: {answer:?}"
        );
        assert_eq!(answer[0].0, "private.send");
        let id = answer[0].1["id"].clone();
        for c in [2, 3] {
            let got = t.take(c);
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!(got[0].0, "private.message");
            assert_eq!((&got[0].1["message"], &got[0].1["id"]), (&json!("hi"), &id));
            assert_eq!(got[0].1["user"], "ann");
        }
        // Kept for both, whoever asks.
        t.call(3, "private.history", json!({ "with": "ann" }))
            .unwrap();
        let history = &t.take(3)[0].1["messages"];
        assert_eq!(history.as_array().map(Vec::len), Some(1));
        assert_eq!(history[0]["id"], id);
    }

    #[test]
    fn what_a_private_message_needs_is_checked_before_it_is_kept() {
        let t = TestHub::new(Config {
            max_text_chars: 5,
            ..Config::default()
        });
        t.sign_in(1, "ann");
        for (data, code) in [
            (json!({ "to": "bob" }), "bad_request"),
            (json!({ "to": "bob", "message": "   " }), "bad_request"),
            (json!({ "to": "bob", "message": "toolong" }), "bad_request"),
            (json!({ "message": "hi" }), "bad_request"),
        ] {
            let e = t.call(1, "private.send", data.clone()).unwrap_err();
            assert_eq!(e.code(), code, "{data}");
        }
        t.call(1, "private.history", json!({ "with": "bob" }))
            .unwrap();
        assert_eq!(t.take(1)[0].1["messages"], json!([]));
        // Anonymous connections have no private messages.
        t.hub.opened(9, &Claim::Anonymous, None).unwrap();
        let e = t
            .call(9, "private.send", json!({ "to": "ann", "message": "x" }))
            .unwrap_err();
        assert_eq!(e.code(), "not_authenticated");
    }
}
