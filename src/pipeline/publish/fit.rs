//! A record that cannot be published as it stands (its JSON is larger than the MQTT packet
//! limit: a terminal that sends megabytes in a free-text field) goes out in a reduced form
//! rather than blocking every record behind it. Pure.

use serde_json::{Map, Value};

/// Strings longer than this are shortened when dropping `extra` fields was not enough.
const SHORT: usize = 256;

/// The record JSON cut to at most `max` bytes, with `"truncated": true`: the fields under `extra`
/// go first, largest first; then every string longer than [`SHORT`] characters is shortened.
/// `None` when even that does not fit (or the text is not a JSON object).
pub fn fit(json: &str, max: usize) -> Option<String> {
    if json.len() <= max {
        return Some(json.to_string());
    }
    let Ok(Value::Object(mut record)) = serde_json::from_str::<Value>(json) else {
        return None;
    };
    record.insert("truncated".into(), Value::Bool(true));
    if let Some(Value::Object(extra)) = record.get_mut("extra") {
        let mut sizes: Vec<(usize, String)> = extra
            .iter()
            .map(|(k, v)| (v.to_string().len(), k.clone()))
            .collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let mut over = json.len().saturating_sub(max);
        for (size, key) in sizes {
            extra.remove(&key);
            over = over.saturating_sub(size + key.len() + 4);
            if over == 0 {
                break;
            }
        }
    }
    let text = Value::Object(record.clone()).to_string();
    if text.len() <= max {
        return Some(text);
    }
    shorten(&mut record);
    let text = Value::Object(record).to_string();
    (text.len() <= max).then_some(text)
}

fn shorten(map: &mut Map<String, Value>) {
    for v in map.values_mut() {
        match v {
            Value::String(s) if s.chars().count() > SHORT => {
                let cut: String = s.chars().take(SHORT).collect();
                *s = format!("{cut}…");
            }
            Value::Object(m) => shorten(m),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(extra: Value, name: &str) -> String {
        json!({
            "event_id": "door-1-1",
            "terminal": "door",
            "person": {"name": name},
            "snapshot": false,
            "extra": extra,
        })
        .to_string()
    }

    #[test]
    fn a_record_that_fits_goes_out_unchanged() {
        let r = record(json!({"description": "short"}), "Ada");
        assert_eq!(fit(&r, 10_000).as_deref(), Some(r.as_str()));
    }

    #[test]
    fn an_oversized_extra_field_is_dropped_and_the_record_says_truncated() {
        let big = "x".repeat(600_000);
        let r = record(json!({"description": big, "mobile": "123"}), "Ada");
        let out = fit(&r, 512 * 1024).expect("fits once cut");
        assert!(out.len() <= 512 * 1024);
        let v: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["truncated"], true);
        assert_eq!(v["event_id"], "door-1-1");
        assert!(v["extra"].get("description").is_none());
        assert_eq!(
            v["extra"]["mobile"], "123",
            "small fields stay when the big one was enough"
        );
    }

    #[test]
    fn long_mapped_fields_are_shortened_when_dropping_extra_is_not_enough() {
        let r = record(json!({}), &"n".repeat(10_000));
        let out = fit(&r, 2_000).expect("fits once shortened");
        let v: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["truncated"], true);
        assert!(v["person"]["name"].as_str().expect("name").chars().count() <= SHORT + 1);
    }

    #[test]
    fn a_record_that_cannot_fit_is_refused() {
        let r = record(json!({}), "Ada");
        assert_eq!(fit(&r, 20), None);
        assert_eq!(fit("[1,2,3]", 2), None, "not an object");
    }

    #[test]
    fn a_record_of_exactly_the_limit_goes_out_unchanged_and_one_byte_more_is_cut() {
        let r = record(json!({"description": "x".repeat(100)}), "Ada");
        assert_eq!(fit(&r, r.len()).as_deref(), Some(r.as_str()));
        let cut = fit(&r, r.len() - 1).expect("fits without the description");
        let v: Value = serde_json::from_str(&cut).expect("json");
        assert_eq!(v["truncated"], true);
        assert!(v["extra"].get("description").is_none());
    }

    #[test]
    fn the_largest_extra_field_goes_first_and_only_as_many_as_needed() {
        let r = record(
            json!({"small": "s".repeat(100), "large": "l".repeat(5_000), "medium": "m".repeat(1_000)}),
            "Ada",
        );
        let v: Value = serde_json::from_str(&fit(&r, r.len() - 10).expect("fits")).expect("json");
        assert!(v["extra"].get("large").is_none());
        assert_eq!(v["extra"]["medium"], "m".repeat(1_000));
        assert_eq!(v["extra"]["small"], "s".repeat(100));
    }

    #[test]
    fn a_string_of_exactly_the_short_length_is_kept_and_longer_ones_end_in_an_ellipsis() {
        let r = record(json!({}), &"n".repeat(SHORT));
        let long = json!({"event_id": "door-1-1", "person": {"name": "n".repeat(SHORT + 50)}, "note": "k".repeat(SHORT), "pad": "p".repeat(3_000)}).to_string();
        let out: Value = serde_json::from_str(&fit(&long, 1_500).expect("fits")).expect("json");
        assert_eq!(out["person"]["name"], format!("{}…", "n".repeat(SHORT)));
        assert_eq!(
            out["note"],
            "k".repeat(SHORT),
            "not longer than SHORT: kept"
        );
        assert_eq!(fit(&r, 10_000).as_deref(), Some(r.as_str()));
    }

    #[test]
    fn a_record_exactly_at_the_limit_after_cutting_goes_out() {
        let r = record(json!({"description": "x".repeat(10_000)}), "Ada");
        let cut = fit(&r, 10_000).expect("fits");
        assert_eq!(fit(&r, cut.len()).as_deref(), Some(cut.as_str()));
        assert_eq!(fit(&r, cut.len() - 1), None);
    }

    /// What dropping `extra.description` saves: its value, its key, two quotes, a colon, a comma.
    fn member_len(key: &str, value: &str) -> usize {
        json!(value).to_string().len() + key.len() + 4
    }

    #[test]
    fn dropping_stops_once_the_dropped_fields_make_up_the_excess() {
        let description = "x".repeat(1_000);
        let r = record(
            json!({"description": description, "mobile": "123"}),
            &"n".repeat(300),
        );
        let out = fit(&r, r.len() - member_len("description", &description)).expect("fits");
        let v: Value = serde_json::from_str(&out).expect("json");
        assert!(v["extra"].get("description").is_none());
        assert_eq!(
            v["extra"]["mobile"], "123",
            "the excess was made up: mobile stays"
        );
        // The `"truncated":true` flag's bytes come from shortening the long name.
        assert_eq!(v["person"]["name"], format!("{}…", "n".repeat(SHORT)));
    }

    #[test]
    fn one_byte_more_than_the_largest_field_saves_drops_the_next_largest_too() {
        let description = "x".repeat(1_000);
        let r = record(
            json!({"description": description, "note": "k".repeat(40)}),
            "Ada",
        );
        let out = fit(&r, r.len() - member_len("description", &description) - 1)
            .expect("fits once both are dropped");
        let v: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["extra"], json!({}));
        assert_eq!(v["truncated"], true);
    }
}
