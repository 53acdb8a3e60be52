//! Borrowing views of a JSON request body, shared by the fronts: an object's members are
//! kept as the raw text they were sent in until a field is asked for, so no tree of the
//! whole body is built and a member the request never reads costs one scan over its text.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON string, borrowed from the body unless it holds escapes.
pub(crate) struct Text<'a>(pub Cow<'a, str>);

impl<'a> Text<'a> {
    /// `raw` as a string, if it is one.
    pub fn of(raw: &'a RawValue) -> Option<Cow<'a, str>> {
        serde_json::from_str::<Text<'a>>(raw.get())
            .ok()
            .map(|t| t.0)
    }
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// An object's members as raw values, in the order sent. A name sent twice means its last
/// value, as a parsed map would keep.
#[derive(Default)]
pub(crate) struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Fields<'a> {
    /// The members of `raw`, if it is an object.
    pub fn of(raw: &'a RawValue) -> Option<Fields<'a>> {
        serde_json::from_str(raw.get()).ok()
    }

    /// A member's value; `None` when absent.
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }

    /// A member's value; `None` when absent or null.
    pub fn value(&self, name: &str) -> Option<&'a RawValue> {
        self.get(name).filter(|v| !is_null(v))
    }

    /// A member that is a string; `None` when absent or of another kind.
    pub fn text(&self, name: &str) -> Option<Cow<'a, str>> {
        Text::of(self.get(name)?)
    }

    /// A member that is an object, its members unread; `None` when absent or not one.
    pub fn object(&self, name: &str) -> Option<Fields<'a>> {
        Fields::of(self.get(name)?)
    }
}

pub(crate) fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

/// Whether `raw` is an object (without reading its members).
pub(crate) fn is_object(raw: &RawValue) -> bool {
    raw.get().starts_with('{')
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Text(name)) = map.next_key::<Text<'de>>()? {
                    fields.push((name, map.next_value::<&'de RawValue>()?));
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_borrow_the_body_and_the_last_duplicate_wins() {
        let body = r#"{"id": "a", "n": 1, "id": "b\u0021", "o": {"x": [1, 2]}, "z": null}"#;
        let fields: Fields = serde_json::from_str(body).unwrap();
        assert_eq!(Text::of(fields.get("id").unwrap()).as_deref(), Some("b!"));
        assert_eq!(fields.get("n").unwrap().get(), "1");
        assert!(is_object(fields.get("o").unwrap()));
        assert!(fields.get("z").is_some() && fields.value("z").is_none());
        assert!(fields.get("missing").is_none());
        assert!(
            Fields::of(fields.get("n").unwrap()).is_none(),
            "1 is no object"
        );
        assert!(
            Text::of(fields.get("n").unwrap()).is_none(),
            "1 is no string"
        );
    }
}
