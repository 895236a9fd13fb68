//! `application/x-www-form-urlencoded`, as query strings and form bodies carry it
//! (URL Standard, 5.1): the server's admin routes, the hub's upgrade check and the
//! broker's direct commands all read it.

/// The pairs of a query string (`a=1&b=x%20y`), percent-decoded, `+` read as a space.
/// A pair without `=` has an empty value; bytes that do not decode to UTF-8 are
/// replaced.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs() {
        assert_eq!(
            parse_query("userId=23&softId=web&name=a%20b+c&flag&=x&bad=%zz%4"),
            vec![
                ("userId".into(), "23".into()),
                ("softId".into(), "web".into()),
                ("name".into(), "a b c".into()),
                ("flag".into(), "".into()),
                ("".into(), "x".into()),
                ("bad".into(), "%zz%4".into()),
            ]
        );
        assert_eq!(parse_query(""), vec![]);
        assert_eq!(parse_query("k=%C3%A9"), vec![("k".into(), "é".into())]);
    }
}
