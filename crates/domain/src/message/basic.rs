//! Location, contacts and reaction messages. Meta states no length limits
//! for them, so only their shape is checked: what Meta requires is there and
//! has the right type, and coordinates are on the globe.

use std::ops::RangeInclusive;

use serde_json::Value;

use super::fields::{ANY, Array, NON_EMPTY, Object, invalid_type};
use crate::FieldError;

const LATITUDE: RangeInclusive<f64> = -90.0..=90.0;
const LONGITUDE: RangeInclusive<f64> = -180.0..=180.0;
/// The longest emoji (a ZWJ sequence with skin tones) is 10 scalar values;
/// the empty string removes a reaction. Longer text is not a reaction.
const EMOJI_MAX: usize = 16;

pub(super) fn check_location(value: &Value, path: &str) -> Result<(), FieldError> {
    let location = Object::new(value, path)?;
    check_coordinate(&location, "latitude", LATITUDE)?;
    check_coordinate(&location, "longitude", LONGITUDE)?;
    location.optional_string("name", ANY)?;
    location.optional_string("address", ANY)?;
    Ok(())
}

/// Meta's examples show coordinates both as numbers and as strings of a
/// number; both are accepted and passed on as given.
fn check_coordinate(
    location: &Object,
    key: &str,
    range: RangeInclusive<f64>,
) -> Result<(), FieldError> {
    let path = location.field_path(key);
    let degrees = match location.required(key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => return Err(invalid_type(&path, "a number")),
    };
    match degrees {
        Some(degrees) if range.contains(&degrees) => Ok(()),
        _ => {
            let (min, max) = range.into_inner();
            let message = format!("{path} must be a number from {min} to {max}");
            Err(FieldError::invalid(path, message))
        }
    }
}

/// `contacts` is an array of contact cards, each with a formatted name.
pub(super) fn check_contacts(value: &Value, path: &str) -> Result<(), FieldError> {
    for contact in Array::new(value, path, NON_EMPTY)?.objects() {
        contact?
            .object("name")?
            .string("formatted_name", NON_EMPTY)?;
    }
    Ok(())
}

pub(super) fn check_reaction(value: &Value, path: &str) -> Result<(), FieldError> {
    let reaction = Object::new(value, path)?;
    reaction.string("message_id", NON_EMPTY)?;
    reaction.string("emoji", 0..=EMOJI_MAX)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::{assert_accepts, assert_rejects};

    #[test]
    fn locations() {
        assert_accepts(&[
            (
                "meta's example",
                json!({"type": "location", "location": {"latitude": "37.44216251868683", "longitude": "-122.16153582049394", "name": "Philz Coffee", "address": "101 Forest Ave, Palo Alto, CA 94301"}}),
            ),
            (
                "numbers at the edges",
                json!({"type": "location", "location": {"latitude": -90, "longitude": 180.0}}),
            ),
        ]);
        assert_rejects(&[
            (
                "latitude 91",
                json!({"type": "location", "location": {"latitude": 91, "longitude": 0}}),
                "location.latitude",
                "invalid_value",
            ),
            (
                "longitude -180.5",
                json!({"type": "location", "location": {"latitude": 0, "longitude": -180.5}}),
                "location.longitude",
                "invalid_value",
            ),
            (
                "latitude words",
                json!({"type": "location", "location": {"latitude": "north", "longitude": 0}}),
                "location.latitude",
                "invalid_value",
            ),
            (
                "latitude NaN",
                json!({"type": "location", "location": {"latitude": "NaN", "longitude": 0}}),
                "location.latitude",
                "invalid_value",
            ),
            (
                "latitude a bool",
                json!({"type": "location", "location": {"latitude": true, "longitude": 0}}),
                "location.latitude",
                "invalid_type",
            ),
            (
                "no longitude",
                json!({"type": "location", "location": {"latitude": 1}}),
                "location.longitude",
                "missing_field",
            ),
            (
                "name a number",
                json!({"type": "location", "location": {"latitude": 1, "longitude": 1, "name": 1}}),
                "location.name",
                "invalid_type",
            ),
        ]);
    }

    #[test]
    fn contacts() {
        assert_accepts(&[(
            "meta's example",
            json!({"type": "contacts", "contacts": [{
                "name": {"formatted_name": "Pablo Morales", "first_name": "Pablo", "last_name": "Morales"},
                "phones": [{"phone": "+1 (940) 555-1234", "type": "HOME"}],
                "emails": [{"email": "pablo@example.com", "type": "WORK"}],
            }]}),
        )]);
        assert_rejects(&[
            (
                "no contacts",
                json!({"type": "contacts", "contacts": []}),
                "contacts",
                "too_few",
            ),
            (
                "an object",
                json!({"type": "contacts", "contacts": {"name": {"formatted_name": "P"}}}),
                "contacts",
                "invalid_type",
            ),
            (
                "no name",
                json!({"type": "contacts", "contacts": [{"phones": []}]}),
                "contacts[0].name",
                "missing_field",
            ),
            (
                "no formatted name",
                json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "P"}}, {"name": {"first_name": "P"}}]}),
                "contacts[1].name.formatted_name",
                "missing_field",
            ),
        ]);
    }

    #[test]
    fn reactions() {
        assert_accepts(&[
            (
                "meta's example",
                json!({"type": "reaction", "reaction": {"message_id": "wamid.HBgL", "emoji": "\u{1F600}"}}),
            ),
            (
                "family with skin tones",
                json!({"type": "reaction", "reaction": {"message_id": "wamid.HBgL", "emoji": "👩🏻‍❤️‍💋‍👨🏼"}}),
            ),
            (
                "removal",
                json!({"type": "reaction", "reaction": {"message_id": "wamid.HBgL", "emoji": ""}}),
            ),
        ]);
        assert_rejects(&[
            (
                "no message_id",
                json!({"type": "reaction", "reaction": {"emoji": "👍"}}),
                "reaction.message_id",
                "missing_field",
            ),
            (
                "empty message_id",
                json!({"type": "reaction", "reaction": {"message_id": "", "emoji": "👍"}}),
                "reaction.message_id",
                "empty",
            ),
            (
                "no emoji",
                json!({"type": "reaction", "reaction": {"message_id": "wamid.x"}}),
                "reaction.emoji",
                "missing_field",
            ),
            (
                "a sentence",
                json!({"type": "reaction", "reaction": {"message_id": "wamid.x", "emoji": "I really like this one"}}),
                "reaction.emoji",
                "too_long",
            ),
        ]);
    }
}
