//! The JSON the binaries write (status files, `status --json`), read with serde_json. An object
//! with a repeated key is an error here, as it is for a strict reader: serde_json alone would keep
//! the last value and hide the writer's mistake.

use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Parses one JSON document (surrounding whitespace allowed, nothing after it).
pub fn parse(text: &str) -> Result<Value, String> {
    serde_json::from_str::<UniqueKeys>(text).map_err(|e| format!("JSON: {e}"))?;
    serde_json::from_str(text).map_err(|e| format!("JSON: {e}"))
}

/// A walk over a document that fails on the first object with a key seen twice.
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueKeys)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: Error>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_i64<E: Error>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_u64<E: Error>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_f64<E: Error>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_str<E: Error>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_unit<E: Error>(self) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(A::Error::custom(format!("duplicate key {key:?}")));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn reads_a_document_and_rejects_a_malformed_one() {
        let doc = r#" {"tunnels": [{"name": "a\u00e9\"", "ssh_pid": 12, "rtt_ms": -2.5e3,
            "up": true, "last_reason": null, "s": "x\\\n\ud83d\ude00", "x": [], "y": {}}]} "#;
        let v = parse(doc).unwrap();
        let t = &v["tunnels"][0];
        assert_eq!(t["name"], "a\u{e9}\"");
        assert_eq!(t["ssh_pid"], 12);
        assert_eq!(t["rtt_ms"], -2500.0);
        assert_eq!(t["up"], true);
        assert!(t["last_reason"].is_null() && t.get("last_reason").is_some());
        assert_eq!(t["s"], "x\\\n😀");
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "\"\u{1}\"",
            "{\"a\" 1}",
            "\"x",
            "{} x",
            "\"\\x\"",
            "tru",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn a_repeated_key_is_an_error_at_any_depth() {
        assert!(parse(r#"{"a":1,"b":{"a":2},"c":[{"a":3}]}"#).is_ok());
        for bad in [
            r#"{"a":1,"a":2}"#,
            r#"{"x":{"a":1,"b":2,"a":1}}"#,
            r#"[{"a":[{"k":null,"k":null}]}]"#,
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains("duplicate key"), "{bad}: {e}");
        }
    }
}
