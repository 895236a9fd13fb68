//! The event envelope, the wire contract between clients and the server: JSON text
//! frames `{"event": "<name>", "data": <any JSON>}`. Input is normalised here, in one
//! place, for both ends: `{"module": m, "method": f, ...}` is event `m.f` and
//! `{"type": t, ...}` is event `t`, the forms earlier clients sent.

use serde_json::{json, Value};

/// Encodes the envelope `{"event":..,"data":..}`.
pub fn envelope(event: &str, data: &Value) -> String {
    json!({ "event": event, "data": data }).to_string()
}

/// Why a text message is not an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadInput {
    /// Not JSON, or JSON but not an object naming an event.
    BadJson(String),
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
