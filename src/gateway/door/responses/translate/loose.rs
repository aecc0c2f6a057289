//! Reading a request's members in one pass, without a `Value` tree, and as
//! leniently as a `Value` did: a member of an unexpected type is read as
//! what it turned out to be (never an error: the translation decides what
//! to refuse, and in what order), a member given twice is the last one (as
//! a `Value` map keeps it), and strings borrow from the body where they
//! have no escapes.
//!
//! A struct read from an object implements [`FromMap`]: a loop over its
//! keys taking the members it knows and skipping the rest.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A member as it turned out to be: text, a list of `L`, an object read as
/// `M`, `null`, or anything else (a number or a boolean; or a list or an
/// object where `L` or `M` is [`Skip`]).
#[derive(Debug)]
pub(super) enum Loose<'a, L = Skip, M = Skip> {
    Null,
    Text(Cow<'a, str>),
    List(Vec<L>),
    Object(M),
    Other,
}

/// A member that should be a string.
pub(super) type Str<'a> = Loose<'a>;
/// A list element that should be an object read as `M`.
pub(super) type Obj<'a, M> = Loose<'a, Skip, M>;

impl<L, M> Loose<'_, L, M> {
    /// The text, if it is text.
    pub(super) fn text(&self) -> Option<&str> {
        match self {
            Loose::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// The text of a member that may be missing.
pub(super) fn text<'b, L, M>(member: &'b Option<Loose<'_, L, M>>) -> Option<&'b str> {
    member.as_ref().and_then(Loose::text)
}

/// A value read and thrown away (a list element or an object nobody needs).
#[derive(Debug, Default)]
pub(super) struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Skip)
    }
}

/// A struct read from a JSON object's members.
pub(super) trait FromMap<'a>: Sized {
    fn from_map<A: MapAccess<'a>>(map: A) -> Result<Self, A::Error>;
}

impl<'a> FromMap<'a> for Skip {
    fn from_map<A: MapAccess<'a>>(mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Skip)
    }
}

/// An object key, borrowed when it has no escapes.
pub(super) struct Key<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'a, L: Deserialize<'a>, M: FromMap<'a>> Deserialize<'a> for Loose<'a, L, M> {
    fn deserialize<D: Deserializer<'a>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor(PhantomData))
    }
}

struct LooseVisitor<'a, L, M>(PhantomData<(&'a (), L, M)>);

impl<'a, L: Deserialize<'a>, M: FromMap<'a>> Visitor<'a> for LooseVisitor<'a, L, M> {
    type Value = Loose<'a, L, M>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Loose::Other)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Loose::Other)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Loose::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Loose::Other)
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'a str) -> Result<Self::Value, E> {
        Ok(Loose::Text(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Loose::Text(Cow::Owned(s.to_string())))
    }
    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut list = Vec::new();
        while let Some(element) = seq.next_element()? {
            list.push(element);
        }
        Ok(Loose::List(list))
    }
    fn visit_map<A: MapAccess<'a>>(self, map: A) -> Result<Self::Value, A::Error> {
        M::from_map(map).map(Loose::Object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default)]
    struct Pair<'a> {
        a: Option<Str<'a>>,
        b: Option<Loose<'a, Obj<'a, Pair<'a>>>>,
    }

    impl<'a> FromMap<'a> for Pair<'a> {
        fn from_map<A: MapAccess<'a>>(mut map: A) -> Result<Self, A::Error> {
            let mut p = Pair::default();
            while let Some(Key(key)) = map.next_key()? {
                match &*key {
                    "a" => p.a = Some(map.next_value()?),
                    "b" => p.b = Some(map.next_value()?),
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(p)
        }
    }

    fn read(json: &str) -> Obj<'_, Pair<'_>> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn any_type_reads_and_the_last_member_wins() {
        let Loose::Object(p) =
            read(r#"{"a": 1, "b": [{"a": "x\"y"}, 3, null], "a": "z", "c": {"d": []}}"#)
        else {
            panic!()
        };
        assert_eq!(text(&p.a), Some("z"));
        let Some(Loose::List(list)) = p.b else {
            panic!()
        };
        assert!(matches!(&list[0], Loose::Object(q) if text(&q.a) == Some("x\"y")));
        assert!(matches!(list[1], Loose::Other));
        assert!(matches!(list[2], Loose::Null));
        for other in ["[1, {}]", "true", "\"s\"", "null", "2.5"] {
            assert!(!matches!(read(other), Loose::Object(_)), "{other}");
        }
        assert!(serde_json::from_str::<Obj<Pair>>("{\"a\": }").is_err());
    }

    #[test]
    fn unescaped_strings_are_borrowed() {
        let Loose::Object(p) = read(r#"{"a": "plain", "b": [{"a": "esc\n"}]}"#) else {
            panic!()
        };
        assert!(matches!(p.a, Some(Loose::Text(Cow::Borrowed("plain")))));
        let Some(Loose::List(list)) = p.b else {
            panic!()
        };
        assert!(
            matches!(&list[0], Loose::Object(q) if matches!(q.a, Some(Loose::Text(Cow::Owned(_)))))
        );
    }
}
