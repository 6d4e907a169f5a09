//! Readers for the JSON of a message object. Meta's limits are all of the form
//! "this field, this type, this many characters or items", so every parser in
//! `message` is written with these readers: each failure names the field's
//! path in the request ("interactive.action.buttons[2].reply.title") with a
//! stable code, and nothing here indexes into input or panics on it.

use std::collections::HashSet;
use std::ops::RangeInclusive;

use serde_json::{Map, Value};

use crate::FieldError;

/// Any length or count: for fields Meta sets no limit on.
pub(super) const ANY: RangeInclusive<usize> = 0..=usize::MAX;
/// At least one character or item, and no upper limit.
pub(super) const NON_EMPTY: RangeInclusive<usize> = 1..=usize::MAX;

/// "text" and "body" give "text.body"; a template given on its own is the
/// root, with the empty path, so its fields are just "name", "language".
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The path as the subject of an error sentence; the root has no name.
fn subject(path: &str) -> &str {
    if path.is_empty() { "the object" } else { path }
}

pub(super) fn invalid_type(path: &str, expected: &str) -> FieldError {
    let message = format!("{} must be {expected}", subject(path));
    FieldError::new(path.to_owned(), "invalid_type", message)
}

/// A value outside a closed set (`interactive.type`, `header.type`, ...).
pub(super) fn not_one_of<T>(path: &str, options: &[(&str, T)]) -> FieldError {
    let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
    let message = format!("{} must be one of: {}", subject(path), names.join(", "));
    FieldError::invalid(path.to_owned(), message)
}

/// Meta counts characters as Unicode scalar values (what `chars()` yields),
/// not bytes: "é" is one character, so is "😀".
pub(super) fn check_length(
    path: &str,
    value: &str,
    limit: RangeInclusive<usize>,
) -> Result<(), FieldError> {
    let (min, max) = limit.into_inner();
    let n = value.chars().count();
    let (code, message) = if n > max {
        (
            "too_long",
            format!("{path} is {n} characters; the limit is {max}"),
        )
    } else if n == 0 && min > 0 {
        ("empty", format!("{path} is empty"))
    } else if n < min {
        (
            "too_short",
            format!("{path} is {n} characters; the minimum is {min}"),
        )
    } else {
        return Ok(());
    };
    Err(FieldError::new(path.to_owned(), code, message))
}

/// Meta fetches media links and opens button links itself, over TLS only; a
/// link it cannot use fails the send long after the service heard "queued",
/// so it is refused here. Hosts are names or IPv4 addresses (IDN allowed);
/// Meta cannot reach IPv6 literals or hosts without a name anyway.
pub(super) fn check_https_url(path: &str, url: &str) -> Result<(), FieldError> {
    // Without the scheme nothing below matches, and the empty host fails.
    let rest = match url.split_at_checked("https://".len()) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https://") => rest,
        _ => "",
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = match host_port.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => host_port,
    };
    let valid = host.chars().any(char::is_alphanumeric)
        && host
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_'))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(())
    } else {
        let message =
            format!("{path} must be an https URL with a host, like https://example.com/photo.jpg");
        Err(FieldError::new(path.to_owned(), "invalid_url", message))
    }
}

/// A JSON object in the request, with its path for errors.
#[derive(Debug, Clone)]
pub(super) struct Object<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Object<'a> {
    pub(super) fn new(value: &'a Value, path: &str) -> Result<Self, FieldError> {
        match value {
            Value::Object(map) => Ok(Self::from_map(map, path)),
            _ => Err(invalid_type(path, "an object")),
        }
    }

    pub(super) fn from_map(map: &'a Map<String, Value>, path: &str) -> Self {
        Self {
            map,
            path: path.to_owned(),
        }
    }

    pub(super) fn field_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// A field as given. `null` counts as present (and then fails its type
    /// check): the object goes to Meta unchanged, and Meta rejects nulls.
    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    pub(super) fn required(&self, key: &str) -> Result<&'a Value, FieldError> {
        self.get(key)
            .ok_or_else(|| FieldError::missing(self.field_path(key)))
    }

    pub(super) fn object(&self, key: &str) -> Result<Object<'a>, FieldError> {
        Object::new(self.required(key)?, &self.field_path(key))
    }

    pub(super) fn optional_object(&self, key: &str) -> Result<Option<Object<'a>>, FieldError> {
        self.get(key)
            .map(|value| Object::new(value, &self.field_path(key)))
            .transpose()
    }

    /// A string field whose length in characters is within `limit`.
    pub(super) fn string(
        &self,
        key: &str,
        limit: RangeInclusive<usize>,
    ) -> Result<&'a str, FieldError> {
        self.as_string(key, self.required(key)?, limit)
    }

    pub(super) fn optional_string(
        &self,
        key: &str,
        limit: RangeInclusive<usize>,
    ) -> Result<Option<&'a str>, FieldError> {
        self.get(key)
            .map(|value| self.as_string(key, value, limit))
            .transpose()
    }

    fn as_string(
        &self,
        key: &str,
        value: &'a Value,
        limit: RangeInclusive<usize>,
    ) -> Result<&'a str, FieldError> {
        let path = self.field_path(key);
        let string = value
            .as_str()
            .ok_or_else(|| invalid_type(&path, "a string"))?;
        check_length(&path, string, limit)?;
        Ok(string)
    }

    pub(super) fn https_url(&self, key: &str) -> Result<&'a str, FieldError> {
        let url = self.string(key, ANY)?;
        check_https_url(&self.field_path(key), url)?;
        Ok(url)
    }

    pub(super) fn optional_bool(&self, key: &str) -> Result<Option<bool>, FieldError> {
        self.get(key)
            .map(|value| {
                value
                    .as_bool()
                    .ok_or_else(|| invalid_type(&self.field_path(key), "true or false"))
            })
            .transpose()
    }

    /// A string field from a closed set, mapped to what it means.
    pub(super) fn choice<T: Copy>(
        &self,
        key: &str,
        options: &[(&str, T)],
    ) -> Result<T, FieldError> {
        let value = self.string(key, ANY)?;
        options
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, meaning)| *meaning)
            .ok_or_else(|| not_one_of(&self.field_path(key), options))
    }

    /// An array field with a number of items within `count`.
    pub(super) fn array(
        &self,
        key: &str,
        count: RangeInclusive<usize>,
    ) -> Result<Array<'a>, FieldError> {
        Array::new(self.required(key)?, &self.field_path(key), count)
    }

    pub(super) fn optional_array(
        &self,
        key: &str,
        count: RangeInclusive<usize>,
    ) -> Result<Option<Array<'a>>, FieldError> {
        self.get(key)
            .map(|value| Array::new(value, &self.field_path(key), count))
            .transpose()
    }
}

/// A JSON array in the request, with its path for errors.
#[derive(Debug, Clone)]
pub(super) struct Array<'a> {
    items: &'a [Value],
    path: String,
}

impl<'a> Array<'a> {
    pub(super) fn new(
        value: &'a Value,
        path: &str,
        count: RangeInclusive<usize>,
    ) -> Result<Self, FieldError> {
        let items = value
            .as_array()
            .ok_or_else(|| invalid_type(path, "an array"))?;
        let (min, max) = count.into_inner();
        let n = items.len();
        let (code, message) = if n > max {
            (
                "too_many",
                format!("{path} has {n} items; the limit is {max}"),
            )
        } else if n < min {
            (
                "too_few",
                format!("{path} has {n} items; the minimum is {min}"),
            )
        } else {
            return Ok(Self {
                items,
                path: path.to_owned(),
            });
        };
        Err(FieldError::new(path.to_owned(), code, message))
    }

    pub(super) fn path(&self) -> &str {
        &self.path
    }

    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// Each item, which must be an object, with its path ("buttons[2]").
    pub(super) fn objects(&self) -> impl Iterator<Item = Result<Object<'a>, FieldError>> + '_ {
        self.items
            .iter()
            .enumerate()
            .map(|(i, item)| Object::new(item, &format!("{}[{i}]", self.path)))
    }
}

/// The values seen so far in a set that must not repeat (button titles, row
/// ids): a repeat is reported at its own path, the first one stays valid.
#[derive(Debug, Default)]
pub(super) struct Distinct<'a> {
    seen: HashSet<&'a str>,
}

impl<'a> Distinct<'a> {
    pub(super) fn check(&mut self, path: String, value: &'a str) -> Result<(), FieldError> {
        if self.seen.insert(value) {
            Ok(())
        } else {
            let message = format!("{path} repeats {value:?}; each must be unique");
            Err(FieldError::new(path, "duplicate", message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_count_unicode_scalar_values() {
        assert!(check_length("f", &"é".repeat(20), 1..=20).is_ok());
        assert!(check_length("f", &"😀".repeat(20), 1..=20).is_ok());
        let err = check_length("f", &"😀".repeat(21), 1..=20).expect_err("21 > 20");
        assert_eq!(
            (err.code, err.message.as_str()),
            ("too_long", "f is 21 characters; the limit is 20")
        );
        assert_eq!(
            check_length("f", "", 1..=20).map_err(|e| e.code),
            Err("empty")
        );
        assert_eq!(
            check_length("f", "ab", 3..=20).map_err(|e| e.code),
            Err("too_short")
        );
        assert!(check_length("f", "", ANY).is_ok());
    }

    #[test]
    fn https_urls_need_the_scheme_and_a_host() {
        let good = [
            "https://example.com",
            "https://example.com/a.jpg",
            "HTTPS://Example.COM/a.jpg?x=1#y",
            "https://cdn.example.com:8443/a/b.pdf",
            "https://user:pw@example.com/a",
            "https://münchen.de/bild.png",
            "https://203.0.113.7/a.png",
        ];
        for url in good {
            assert!(check_https_url("link", url).is_ok(), "{url}");
        }
        let bad = [
            "",
            "http://example.com/a.jpg",
            "ftp://example.com/a",
            "https://",
            "https:///a.jpg",
            "https://?x",
            "https://./a.jpg",
            "https://:443/a",
            "https://exa mple.com/a",
            "https://example.com/a b.jpg",
            "https://[::1]/a",
            "https://ex<ample>.com",
            "example.com/a.jpg",
            "//example.com/a.jpg",
            "httpsé://example.com",
            "😀😀",
        ];
        for url in bad {
            let err = check_https_url("image.link", url).expect_err(url);
            assert_eq!(
                (err.field.as_ref(), err.code),
                ("image.link", "invalid_url"),
                "{url}"
            );
        }
    }
}
