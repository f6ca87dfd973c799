//! Request parameters: the query string (and, for the "sync" endpoints and management POSTs,
//! a JSON or form body, protocol.md 2.2) checked against the endpoints' schemas — types,
//! ranges and patterns — before anything reaches a handler. The one decoder for the backup and
//! reader sessions, the management API and the protocol upgrade; the upgrade answers in PBS's
//! other family of texts (see [`Texts`]).

use std::collections::HashMap;

use serde_json::Value;

use crate::actors::SessionError;
use crate::format::{ArchiveKind, ArchiveName, Digest};
use crate::http::ApiError;

/// Largest form/JSON body of an ordinary call (protocol.md 1.2: must be below 64 KiB).
pub const MAX_PARAM_BODY: usize = 64 * 1024 - 1;

/// Query string -> ordered (key, value) pairs, form-urlencoded decoding.
pub fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default()
}

#[derive(Debug, Default)]
pub struct Params {
    values: HashMap<String, Value>,
    texts: Texts,
}

/// Which of PBS's two families of texts a refused parameter is reported in.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Texts {
    /// `parameter verification failed - '<name>': ...`: API calls and session requests, whose
    /// parameters PBS verifies against the endpoint's schema.
    #[default]
    Schema,
    /// `parameter '<name>': ...`: the protocol upgrade, whose query PBS checks as it parses it.
    Query,
}

fn schema_err(name: &str, msg: &str) -> ApiError {
    ApiError::bad_request(format!("parameter verification failed - '{name}': {msg}"))
}

fn query_err(name: &str, msg: &str) -> ApiError {
    ApiError::bad_request(format!("parameter '{name}': {msg}"))
}

impl Texts {
    fn missing(self, name: &str) -> ApiError {
        match self {
            Texts::Schema => schema_err(name, "property is missing and it is not optional"),
            Texts::Query => query_err(name, "parameter is missing and it is not optional"),
        }
    }

    fn not_int(self, name: &str, value: &str) -> ApiError {
        match self {
            Texts::Schema => schema_err(name, "Expected integer value."),
            Texts::Query => query_err(name, &format!("value '{value}' is not an integer")),
        }
    }

    fn not_bool(self, name: &str, value: &Value) -> ApiError {
        match (self, value) {
            (Texts::Query, Value::String(s)) => query_err(name, &format!("unable to parse boolean '{s}'")),
            _ => schema_err(name, "Expected boolean value."),
        }
    }
}

impl Params {
    /// Query pairs; a repeated key keeps its values as an array (the client's array encoding).
    pub fn from_query(pairs: Vec<(String, String)>) -> Params {
        let mut map: HashMap<String, Value> = HashMap::new();
        for (k, v) in pairs {
            match map.remove(&k) {
                None => map.insert(k, Value::String(v)),
                Some(Value::Array(mut a)) => {
                    a.push(Value::String(v));
                    map.insert(k, Value::Array(a))
                }
                Some(prev) => map.insert(k, Value::Array(vec![prev, Value::String(v)])),
            };
        }
        map.remove("_dc");
        Params { values: map, texts: Texts::Schema }
    }

    /// The query of the protocol upgrade: only `known` keys, each at most once (`_dc` is
    /// ignored), checked in the order given; its errors read `parameter '<name>': ...`.
    pub fn from_upgrade_query(pairs: Vec<(String, String)>, known: &[&str]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = pairs.into_iter().filter(|(k, _)| k != "_dc").collect();
        for (i, (key, _)) in pairs.iter().enumerate() {
            if !known.contains(&key.as_str()) {
                return Err(query_err(key, "schema does not allow additional properties"));
            }
            if pairs[..i].iter().any(|(k, _)| k == key) {
                return Err(query_err(key, "duplicate parameter"));
            }
        }
        Ok(Params { texts: Texts::Query, ..Params::from_query(pairs) })
    }

    /// Adds the parameters of a sync endpoint's body: JSON object or form-urlencoded.
    pub fn merge_body(&mut self, content_type: Option<&str>, body: &[u8]) -> Result<(), ApiError> {
        if body.is_empty() {
            return Ok(());
        }
        let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("Request body is not valid UTF-8"))?;
        let ct = content_type.unwrap_or("").split(';').next().unwrap_or("").trim();
        if ct.eq_ignore_ascii_case("application/json") {
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(obj)) => self.values.extend(obj),
                Ok(_) => return Err(ApiError::bad_request("unable to parse json body - expected an object")),
                Err(e) => return Err(ApiError::bad_request(format!("unable to parse json body - {e}"))),
            }
        } else {
            let form = Params::from_query(parse_query(Some(text)));
            self.values.extend(form.values);
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    pub fn str(&self, name: &str) -> Result<&str, ApiError> {
        match self.get(name) {
            None => Err(self.texts.missing(name)),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(schema_err(name, "Expected string value.")),
        }
    }

    pub fn opt_str(&self, name: &str) -> Result<Option<&str>, ApiError> {
        if self.get(name).is_none() { Ok(None) } else { self.str(name).map(Some) }
    }

    /// An integer in `min..=max`, from a JSON number or a decimal string.
    pub fn int(&self, name: &str, min: u64, max: u64) -> Result<u64, ApiError> {
        let v = self.get(name).ok_or_else(|| self.texts.missing(name))?;
        int_value(name, v, min, max)
    }

    /// A signed integer given as text, without a range of its own (the upgrade's `backup-time`,
    /// which `BackupTime` checks).
    pub fn i64(&self, name: &str) -> Result<i64, ApiError> {
        let s = self.str(name)?;
        s.parse().map_err(|_| self.texts.not_int(name, s))
    }

    pub fn archive(&self, name: &str, kind: ArchiveKind) -> Result<ArchiveName, ApiError> {
        let s = self.str(name)?;
        let parsed = ArchiveName::parse(s);
        match (parsed, kind) {
            (Ok(a), k) if a.kind() == k => Ok(a),
            (_, ArchiveKind::Blob) if safe_id(s) => Err(SessionError::BlobExtension(s.to_string()).into()),
            (_, _) if safe_id(s) => Err(SessionError::ArchiveExtension(s.to_string()).into()),
            _ => Err(schema_err(name, "value does not match the regex pattern")),
        }
    }

    /// Any archive name (`GET /previous`): an unknown extension is its own error.
    pub fn any_archive(&self, name: &str) -> Result<ArchiveName, ApiError> {
        let s = self.str(name)?;
        match ArchiveName::parse(s) {
            Ok(a) => Ok(a),
            Err(_) if safe_id(s) => Err(SessionError::UnknownArchiveType(s.to_string()).into()),
            Err(_) => Err(schema_err(name, "value does not match the regex pattern")),
        }
    }

    /// Whether the parameter is present at all.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// An optional boolean: JSON `true`/`false` or PBS's words (`1|on|yes|true`, ...).
    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v @ Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "1" | "on" | "yes" | "true" => Ok(Some(true)),
                "0" | "off" | "no" | "false" => Ok(Some(false)),
                _ => Err(self.texts.not_bool(name, v)),
            },
            Some(v) => Err(self.texts.not_bool(name, v)),
        }
    }

    /// A boolean that must be given.
    pub fn bool(&self, name: &str) -> Result<bool, ApiError> {
        self.opt_bool(name)?.ok_or_else(|| self.texts.missing(name))
    }

    /// An optional integer in `min..=max`.
    pub fn opt_int(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        self.get(name).map(|v| int_value(name, v, min, max)).transpose()
    }

    pub fn digest(&self, name: &str) -> Result<Digest, ApiError> {
        digest_value(name, self.str(name)?)
    }

    pub fn digest_list(&self, name: &str) -> Result<Vec<Digest>, ApiError> {
        self.list(name)?
            .iter()
            .map(|v| match v {
                Value::String(s) => digest_value(name, s),
                _ => Err(schema_err(name, "Expected string value.")),
            })
            .collect()
    }

    pub fn offset_list(&self, name: &str) -> Result<Vec<u64>, ApiError> {
        self.list(name)?.iter().map(|v| int_value(name, v, 0, u64::MAX)).collect()
    }

    fn list(&self, name: &str) -> Result<Vec<Value>, ApiError> {
        match self.get(name) {
            None => Err(self.texts.missing(name)),
            Some(Value::Array(a)) => Ok(a.clone()),
            // A one-element list in a query string arrives as a plain value.
            Some(v @ (Value::String(_) | Value::Number(_))) => Ok(vec![v.clone()]),
            Some(_) => Err(schema_err(name, "Expected array value.")),
        }
    }
}

fn int_value(name: &str, v: &Value, min: u64, max: u64) -> Result<u64, ApiError> {
    let n: Option<i128> = match v {
        Value::Number(n) => n.as_i64().map(i128::from).or(n.as_u64().map(i128::from)),
        Value::String(s) => s.parse::<i128>().ok(),
        _ => None,
    };
    match n {
        None => Err(schema_err(name, "Expected integer value.")),
        Some(n) if n < i128::from(min) => Err(schema_err(name, &format!("value must have a minimum value of {min}"))),
        Some(n) if n > i128::from(max) => Err(schema_err(name, &format!("value must have a maximum value of {max}"))),
        Some(n) => Ok(n as u64),
    }
}

fn digest_value(name: &str, s: &str) -> Result<Digest, ApiError> {
    Digest::from_hex(s).map_err(|_| schema_err(name, "value does not match the regex pattern"))
}

fn safe_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Params {
        Params::from_query(parse_query(Some(s)))
    }

    #[test]
    fn query_is_decoded_in_order() {
        let q = parse_query(Some("b=2&a=x+y&c=%2Fz&a=3"));
        assert_eq!(
            q,
            vec![
                ("b".into(), "2".into()),
                ("a".into(), "x y".into()),
                ("c".into(), "/z".into()),
                ("a".into(), "3".into())
            ]
        );
        assert!(parse_query(None).is_empty());
    }

    #[test]
    fn integers_are_range_checked_with_schema_texts() {
        let p = q("wid=0&size=17&x=abc&n=-3");
        assert_eq!(
            p.int("wid", 1, 256).unwrap_err().message,
            "parameter verification failed - 'wid': value must have a minimum value of 1"
        );
        assert_eq!(
            p.int("size", 1, 16).unwrap_err().message,
            "parameter verification failed - 'size': value must have a maximum value of 16"
        );
        assert_eq!(
            p.int("x", 0, 9).unwrap_err().message,
            "parameter verification failed - 'x': Expected integer value."
        );
        assert_eq!(p.int("n", 0, 9).unwrap_err().status, http::StatusCode::BAD_REQUEST);
        assert_eq!(
            p.int("missing", 0, 9).unwrap_err().message,
            "parameter verification failed - 'missing': property is missing and it is not optional"
        );
        assert_eq!(p.int("size", 1, 17).unwrap(), 17);
    }

    #[test]
    fn archive_names_distinguish_bad_names_from_wrong_extensions() {
        let p = q("a=x.didx&b=x.fidx&c=..%2Fetc.didx&d=x.txt");
        assert_eq!(p.archive("a", ArchiveKind::Dynamic).unwrap().as_str(), "x.didx");
        assert_eq!(p.archive("b", ArchiveKind::Dynamic).unwrap_err().message, "wrong archive extension: 'x.fidx'");
        assert_eq!(p.archive("d", ArchiveKind::Blob).unwrap_err().message, "wrong blob file extension: 'x.txt'");
        assert!(p.archive("c", ArchiveKind::Dynamic).unwrap_err().message.contains("regex"));
    }

    #[test]
    fn sync_bodies_merge_json_and_form() {
        let mut p = q("wid=2");
        let body = br#"{"digest-list":["aa"],"offset-list":[0,5]}"#;
        p.merge_body(Some("application/json"), body).unwrap();
        assert_eq!(p.int("wid", 1, 256).unwrap(), 2);
        assert_eq!(p.offset_list("offset-list").unwrap(), vec![0, 5]);
        assert!(p.digest_list("digest-list").unwrap_err().message.contains("regex"));
        let mut f = Params::default();
        f.merge_body(Some("application/x-www-form-urlencoded"), b"size=9").unwrap();
        assert_eq!(f.int("size", 0, 9).unwrap(), 9);
    }
}
