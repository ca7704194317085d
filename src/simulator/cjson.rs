//! JSON printed byte for byte the way the terminal's C library (cJSON, `cJSON_Print`) prints it.
//!
//! Tab indentation, `"key":<TAB>value`, LF line ends, no final newline; arrays inline with `", "`;
//! numbers as old cJSON printed them (whole numbers as `%d`, others as `%f`, i.e. six decimals, so
//! a float32 97.4 widened to double prints as `97.400002`); non-ASCII text raw, control
//! characters as `\u00XX`. Objects must be built with `serde_json`'s `preserve_order` so fields
//! come out in the terminal's order.

use serde_json::{Number, Value};

pub fn print(value: &Value) -> String {
    let mut out = String::new();
    print_value(value, 0, &mut out);
    out
}

fn print_value(value: &Value, depth: usize, out: &mut String) {
    match value {
        Value::Null | Value::Bool(_) => out.push_str(&value.to_string()),
        Value::Number(n) => out.push_str(&number(n)),
        Value::String(s) => string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                print_value(item, depth + 1, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push_str("{\n");
            let len = map.len();
            for (i, (k, v)) in map.iter().enumerate() {
                push_tabs(depth + 1, out);
                string(k, out);
                out.push_str(":\t");
                print_value(v, depth + 1, out);
                if i + 1 < len {
                    out.push(',');
                }
                out.push('\n');
            }
            push_tabs(depth, out);
            out.push('}');
        }
    }
}

fn push_tabs(n: usize, out: &mut String) {
    out.extend(std::iter::repeat_n('\t', n));
}

/// cJSON 1.x `print_number`: integral values within int range as `%d`, other integral values
/// as `%.0f`, tiny or huge as `%e`, the rest as `%f`.
fn number(n: &Number) -> String {
    if let Some(i) = n.as_i64().and_then(|i| i32::try_from(i).ok()) {
        return i.to_string();
    }
    let d = n.as_f64().unwrap_or(0.0);
    if d.fract() == 0.0 && d.abs() < 1.0e60 {
        if d >= f64::from(i32::MIN) && d <= f64::from(i32::MAX) {
            return format!("{}", d as i64);
        }
        return format!("{d:.0}");
    }
    if d.abs() < 1.0e-6 || d.abs() > 1.0e9 {
        return c_exponent(d);
    }
    format!("{d:.6}")
}

/// C's `%e`: `1.000000e-07` (Rust prints `1.000000e-7`).
fn c_exponent(d: f64) -> String {
    let s = format!("{d:.6e}");
    let Some((mantissa, exp)) = s.split_once('e') else {
        return s;
    };
    let (sign, digits) = exp.strip_prefix('-').map_or(('+', exp), |rest| ('-', rest));
    format!("{mantissa}e{sign}{digits:0>2}")
}

fn string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A float32 reading (temperature) as the terminal's JSON carries it: widened to double.
pub fn float32(value: f32) -> Value {
    Number::from_f64(f64::from(value))
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_object_prints_with_tabs_and_no_final_newline() {
        let v = json!({"code": 30000, "message": "push\u{a0}record", "data": {"a": 1, "b": "x"}});
        assert_eq!(
            print(&v),
            "{\n\t\"code\":\t30000,\n\t\"message\":\t\"push\u{a0}record\",\n\t\"data\":\t{\n\t\t\"a\":\t1,\n\t\t\"b\":\t\"x\"\n\t}\n}"
        );
    }

    #[test]
    fn a_float32_temperature_prints_with_six_decimals() {
        assert_eq!(print(&float32(97.4)), "97.400002");
        assert_eq!(print(&float32(36.5)), "36.500000");
        assert_eq!(print(&json!(98.0)), "98");
        assert_eq!(print(&json!(98)), "98");
    }

    #[test]
    fn tiny_and_huge_numbers_print_like_c() {
        assert_eq!(print(&json!(1.0e-7)), "1.000000e-07");
        assert_eq!(print(&json!(1600972860123.5)), "1.600973e+12");
        assert_eq!(print(&json!(1600972860123i64)), "1600972860123");
    }

    #[test]
    fn arrays_are_inline_and_empty_objects_close_on_the_next_line() {
        assert_eq!(print(&json!([1, 2])), "[1, 2]");
        assert_eq!(print(&json!({"d": {}})), "{\n\t\"d\":\t{\n\t}\n}");
    }

    #[test]
    fn control_characters_are_escaped_and_unicode_is_raw() {
        assert_eq!(
            print(&json!("a\"b\\c\nd\u{1}é")),
            "\"a\\\"b\\\\c\\nd\\u0001é\""
        );
    }

    #[test]
    fn the_output_is_valid_json() {
        let v = json!({"t": 97.400002, "n": null, "l": [true, false], "s": "x"});
        let back: Value = serde_json::from_str(&print(&v)).expect("parses");
        assert_eq!(back["l"], json!([true, false]));
    }
}
