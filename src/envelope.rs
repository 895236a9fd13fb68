//! The event envelope, the wire contract between clients and the server: JSON text
//! frames `{"event": "<name>", "data": <any JSON>}`. Input is normalised here, in one
//! place, for both ends: `{"module": m, "method": f, ...}` is event `m.f` and
//! `{"type": t, ...}` is event `t`, the forms earlier clients sent.

use serde_json::Value;

/// Encodes the envelope `{"data":..,"event":..}`: the keys in the order a JSON object
/// with sorted keys has them, written straight from `data`, without first copying it
/// into an object of its own.
pub fn envelope(event: &str, data: &Value) -> String {
    let mut out = Vec::with_capacity(32 + event.len());
    out.extend_from_slice(b"{\"data\":");
    // Writing JSON into a Vec cannot fail: the Vec grows, and every Value serializes.
    let _ = serde_json::to_writer(&mut out, data);
    out.extend_from_slice(b",\"event\":");
    let _ = serde_json::to_writer(&mut out, event);
    out.push(b'}');
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_default()
}

/// [`envelope`] with the history id of what it carries beside the data,
/// `{"data", "event", "id"}`: the data stays exactly what the sender gave.
pub fn envelope_with_id(event: &str, data: &Value, id: &str) -> String {
    let mut out = envelope(event, data);
    out.pop();
    out.push_str(",\"id\":");
    out.push_str(&Value::from(id).to_string());
    out.push('}');
    out
}

/// Why a text message is not an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadInput {
    /// Not JSON, or JSON but not an object naming an event.
    BadJson(String),
    /// More JSON values than the bound given to [`parse_envelope_bounded`].
    TooComplex {
        /// The bound.
        max_values: usize,
    },
}

/// An upper bound on the JSON values in `text`, found without parsing it: one, plus
/// one for each `[`, `{`, `,` and `:` outside strings (a key and its value count
/// two). Stops counting past `max`.
pub fn count_values(text: &str, max: usize) -> usize {
    let mut count = 1;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text.as_bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' | b',' | b':' => {
                count += 1;
                if count > max {
                    return count;
                }
            }
            _ => {}
        }
    }
    count
}

/// [`parse_envelope`], refusing a message of more than `max_values` JSON values
/// before parsing it, so that parsing costs a bounded multiple of the message's size
/// (a value parsed takes 30 to 100 bytes where `0,` took 2).
pub fn parse_envelope_bounded(
    text: &str,
    max_values: Option<usize>,
) -> Result<(String, Value), BadInput> {
    if let Some(max) = max_values {
        if count_values(text, max) > max {
            return Err(BadInput::TooComplex { max_values: max });
        }
    }
    parse_envelope(text)
}

/// Reads an incoming text message as an event: its name and data.
///
/// - `{"event": "e", "data": d}` gives (`e`, `d`; `null` when absent);
/// - `{"module": "m", "method": "f", ...}` gives (`m.f`, the object's `data`, or the
///   object without `module` and `method`);
/// - `{"type": "t", ...}` gives (`t`, the object's `data`, or the object without `type`).
pub fn parse_envelope(text: &str) -> Result<(String, Value), BadInput> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| BadInput::BadJson(format!("invalid JSON: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(BadInput::BadJson("expected a JSON object".into()));
    };
    let take_str = |map: &mut serde_json::Map<String, Value>, key: &str| match map.remove(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
        Some(_) => Err(BadInput::BadJson(format!(
            "\"{key}\" must be a non-empty string"
        ))),
        None => Ok(None),
    };
    let name = if let Some(event) = take_str(&mut map, "event")? {
        event
    } else if let Some(module) = take_str(&mut map, "module")? {
        let method = take_str(&mut map, "method")?
            .ok_or_else(|| BadInput::BadJson("\"module\" without \"method\"".into()))?;
        format!("{module}.{method}")
    } else if let Some(kind) = take_str(&mut map, "type")? {
        kind
    } else {
        return Err(BadInput::BadJson(
            "no \"event\" (or \"module\"/\"method\", or \"type\") field".into(),
        ));
    };
    let data = match map.remove("data") {
        Some(d) => d,
        None if map.is_empty() => Value::Null,
        None => Value::Object(map),
    };
    Ok((name, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_envelope_is_what_a_sorted_object_gives() {
        for (event, data) in [
            (
                "private.message",
                json!({"to": "b", "message": "h\u{e9}\"\n", "n": [1, 2.5, null]}),
            ),
            ("e\"v", json!("text")),
            ("x", Value::Null),
        ] {
            assert_eq!(
                envelope(event, &data),
                json!({ "event": event, "data": data }).to_string()
            );
        }
    }

    #[test]
    fn values_are_counted_outside_strings_only() {
        assert_eq!(count_values("0", 10), 1);
        assert_eq!(count_values("[0,0,0]", 10), 4);
        assert_eq!(count_values(r#"{"a":1,"b":[2]}"#, 10), 6);
        // Brackets, commas and colons inside strings, escaped quotes too.
        assert_eq!(count_values(r#"{"a":"[,:{\"],"}"#, 10), 3);
        let big = format!("[{}0]", "0,".repeat(10_000));
        assert!(count_values(&big, 100) > 100);
        assert_eq!(
            parse_envelope_bounded(&format!(r#"{{"event":"e","data":{big}}}"#), Some(4096)),
            Err(BadInput::TooComplex { max_values: 4096 })
        );
        assert!(parse_envelope_bounded(r#"{"event":"e","data":[1,2]}"#, Some(8)).is_ok());
    }

    #[test]
    fn an_id_goes_beside_the_data() {
        let text = envelope_with_id("message", &json!({"id": 5}), "1-0");
        assert_eq!(text, r#"{"data":{"id":5},"event":"message","id":"1-0"}"#);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["data"], json!({"id": 5}));
    }

    #[test]
    fn envelope_forms() {
        assert_eq!(
            parse_envelope(r#"{"event":"say","data":{"text":"hi"}}"#).unwrap(),
            ("say".into(), json!({"text":"hi"}))
        );
        assert_eq!(
            parse_envelope(r#"{"event":"ping"}"#).unwrap(),
            ("ping".into(), Value::Null)
        );
        assert_eq!(
            parse_envelope(r#"{"module":"chat","method":"send","room":"a","message":"hi"}"#)
                .unwrap(),
            ("chat.send".into(), json!({"room":"a","message":"hi"}))
        );
        assert_eq!(
            parse_envelope(r#"{"module":"chat","method":"send","data":[1]}"#).unwrap(),
            ("chat.send".into(), json!([1]))
        );
        assert_eq!(
            parse_envelope(r#"{"type":"authenticate","sessionId":"x"}"#).unwrap(),
            ("authenticate".into(), json!({"sessionId":"x"}))
        );
    }

    #[test]
    fn bad_envelopes() {
        for text in [
            "not json",
            "[1,2]",
            "\"event\"",
            "{}",
            r#"{"event":""}"#,
            r#"{"event":7}"#,
            r#"{"module":"chat"}"#,
            r#"{"data":{"event":"x"}}"#,
        ] {
            assert!(
                matches!(parse_envelope(text), Err(BadInput::BadJson(_))),
                "{text} was accepted"
            );
        }
    }

    #[test]
    fn envelope_round_trip() {
        let text = envelope("said", &json!({"text": "a \"quoted\" word"}));
        assert_eq!(
            parse_envelope(&text).unwrap(),
            ("said".into(), json!({"text": "a \"quoted\" word"}))
        );
    }
}
