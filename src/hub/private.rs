//! The private module: messages between two users, kept in a history stream per pair.

use super::*;

impl Hub {
    /// The stream of two users' private messages, whatever the order of the two.
    pub(super) fn private_stream(a: &str, b: &str) -> String {
        let (x, y) = if a <= b { (a, b) } else { (b, a) };
        format!("private:{}:{x}:{y}", x.len())
    }

    /// `private.send` `{"to": user, "message": text}`: to every connection of the
    /// recipient, a copy to the sender's other connections, kept in their history.
    pub(super) fn private_send(&self, ctx: &Call, data: &Value) -> Outcome {
        let from = self.user_of(ctx)?;
        let PrivateSend { to, message } = self.read(data)?;
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
        let PrivateHistory { with, page } = self.read(data)?;
        let stream = Self::private_stream(&me, &with);
        let list = self.history(&stream, page)?;
        ctx.reply("private.history", json!({ "with": with, "messages": list }));
        Ok(())
    }

    /// The entries of `stream` that `page` asks for.
    pub(super) fn history(&self, stream: &str, page: Page) -> Result<Value, Error> {
        let list = match page.after {
            Some(after) => self.stores.history.after(stream, Some(after), page.limit)?,
            None => self.stores.history.last(stream, page.limit)?,
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
        t.hub.opened(ConnId(9), &Claim::Anonymous, None).unwrap();
        let e = t
            .call(9, "private.send", json!({ "to": "ann", "message": "x" }))
            .unwrap_err();
        assert_eq!(e.code(), "not_authenticated");
    }
}
