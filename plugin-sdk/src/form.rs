//! `application/x-www-form-urlencoded` bodies with bracketed nested keys, the way Stripe (and
//! Rails-style APIs) expect them: `metadata[order]=42`, `expand[]=customer`,
//! `items[0][price]=price_1`.

use serde_json::Value;

/// Why a JSON value could not become a [`Form`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// Only a JSON object has keys to become the form's top-level fields.
    #[error("a form can only be built from a JSON object, not {0}")]
    NotAnObject(&'static str),
}

/// An ordered list of form fields.
///
/// Keys may contain `[` and `]` to express nesting; those stay literal in the encoded key (as
/// Stripe documents them) while every other reserved character, in keys and values, is
/// percent-encoded and a space becomes `+`.
///
/// ```
/// use psp_plugin_sdk::http::Form;
///
/// let mut form = Form::new();
/// form.push("amount", "100")
///     .push_map("metadata", &[("order", "42")])
///     .push_list("expand", &["customer"]);
/// assert_eq!(form.encode(), "amount=100&metadata[order]=42&expand[]=customer");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// An empty form.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a form from a JSON object, flattening nested objects to `a[b][c]` and arrays to
    /// `a[0]`, `a[1]`. Nulls and empty objects/arrays are left out; booleans become
    /// `true`/`false`.
    pub fn from_json(value: &Value) -> Result<Self, FormError> {
        let Value::Object(map) = value else {
            return Err(FormError::NotAnObject(json_kind(value)));
        };
        let mut form = Form::new();
        for (key, value) in map {
            form.push_json(key, value);
        }
        Ok(form)
    }

    /// Appends one field.
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.fields.push((key.into(), value.into()));
        self
    }

    /// Appends `prefix[key]=value` for every entry.
    pub fn push_map<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        prefix: &str,
        entries: &[(K, V)],
    ) -> &mut Self {
        for (key, value) in entries {
            self.push(format!("{prefix}[{}]", key.as_ref()), value.as_ref());
        }
        self
    }

    /// Appends `key[]=value` for every value (e.g. Stripe's `expand[]`).
    pub fn push_list<V: AsRef<str>>(&mut self, key: &str, values: &[V]) -> &mut Self {
        for value in values {
            self.push(format!("{key}[]"), value.as_ref());
        }
        self
    }

    /// Appends a JSON value under `key`, flattened as in [`from_json`](Form::from_json).
    pub fn push_json(&mut self, key: &str, value: &Value) -> &mut Self {
        match value {
            Value::Null => {}
            Value::Bool(b) => {
                self.push(key, b.to_string());
            }
            Value::Number(n) => {
                self.push(key, n.to_string());
            }
            Value::String(s) => {
                self.push(key, s.as_str());
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.push_json(&format!("{key}[{i}]"), item);
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    self.push_json(&format!("{key}[{k}]"), v);
                }
            }
        }
        self
    }

    /// The fields, in order, unencoded.
    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }

    /// The first value of `key` (exact, unencoded key).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// `true` when the form has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The encoded body: `k=v&k2=v2`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (i, (key, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            encode_into(&mut out, key, true);
            out.push('=');
            encode_into(&mut out, value, false);
        }
        out
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Percent-encodes `s` byte by byte: RFC 3986 unreserved characters stay, a space becomes `+`,
/// and in keys the nesting brackets stay readable.
fn encode_into(out: &mut String, s: &str, is_key: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'[' | b']' if is_key => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0x0f)] as char);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flat_and_map_and_list() {
        let mut form = Form::new();
        form.push("amount", "100")
            .push("currency", "eur")
            .push_map("metadata", &[("order", "42"), ("cl_id", "abc")])
            .push_list("expand", &["latest_charge", "customer"]);
        assert_eq!(
            form.encode(),
            "amount=100&currency=eur&metadata[order]=42&metadata[cl_id]=abc\
             &expand[]=latest_charge&expand[]=customer"
        );
        assert_eq!(form.get("metadata[order]"), Some("42"));
        assert_eq!(form.len(), 6);
    }

    #[test]
    fn nested_json_flattens_objects_and_arrays() {
        let form = Form::from_json(&json!({
            "customer": "cus_1",
            "items": [{"price": "price_1", "quantity": 2}, {"price": "price_2"}],
            "metadata": {"order": {"number": "42"}},
            "capture": false,
            "skipped": null,
            "empty": {}
        }))
        .unwrap();
        // serde_json's map is ordered by key unless `preserve_order` is on.
        assert_eq!(
            form.encode(),
            "capture=false&customer=cus_1&items[0][price]=price_1&items[0][quantity]=2\
             &items[1][price]=price_2&metadata[order][number]=42"
        );
    }

    #[test]
    fn escaping() {
        let mut form = Form::new();
        form.push("description", "Order #42 & co = 100% fun/ok?")
            .push("email", "a+b@example.com")
            .push("unicode", "café ✓")
            .push("weird key&=", "v");
        assert_eq!(
            form.encode(),
            "description=Order+%2342+%26+co+%3D+100%25+fun%2Fok%3F\
             &email=a%2Bb%40example.com&unicode=caf%C3%A9+%E2%9C%93&weird+key%26%3D=v"
        );
        // Brackets are only kept literal in keys.
        let mut form = Form::new();
        form.push("a[b]", "[x]");
        assert_eq!(form.encode(), "a[b]=%5Bx%5D");
    }

    #[test]
    fn from_json_needs_an_object() {
        assert_eq!(
            Form::from_json(&json!([1])),
            Err(FormError::NotAnObject("an array"))
        );
        assert!(Form::from_json(&json!({})).unwrap().is_empty());
    }
}
