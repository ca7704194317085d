// Over 450 lines: the tolerant model of every object the API returns, and dialect tests.
//! What the terminal sends and accepts, read tolerantly.
//!
//! Real units differ from the API document (see `docs/terminal-dialect.md`): numbers arrive as floats
//! or strings, booleans as `0`/`1`, photos as the string `"null"`, field spellings drift between
//! firmware versions. So objects are kept as JSON maps (unknown fields survive a round trip) and
//! read through the lenient accessors below rather than rigid structs.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A documented API error code, with the document's message and what it means for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiCode {
    PasswordNotExist,
    PasswordExpired,
    RequestExpired,
    IpInvalid,
    SignatureFailed,
    UserNotExists,
    UserNotMatch,
    ParamInvalid,
    NoFaceDetected,
    MissingParam,
    AvatarFileIllegal,
    NotSupport,
    RpcFailed,
    InternalServerError,
    MultiRequestError,
    MethodNotAllowed,
    SearchListNull,
    DatabaseFull,
    UnknownError,
    /// A code the document does not list; newer firmware may have more.
    Other(i64),
}

/// Every documented code, with its number.
const CODES: [(ApiCode, i64); 19] = {
    use ApiCode::*;
    [
        (PasswordNotExist, 10001),
        (PasswordExpired, 10002),
        (RequestExpired, 10003),
        (IpInvalid, 10004),
        (SignatureFailed, 10005),
        (UserNotExists, 20001),
        (UserNotMatch, 20002),
        (ParamInvalid, 30001),
        (NoFaceDetected, 30002),
        (MissingParam, 30003),
        (AvatarFileIllegal, 30004),
        (NotSupport, 40001),
        (RpcFailed, 50001),
        (InternalServerError, 50002),
        (MultiRequestError, 50003),
        (MethodNotAllowed, 50004),
        (SearchListNull, 50008),
        (DatabaseFull, 50009),
        (UnknownError, 99999),
    ]
};

impl ApiCode {
    pub fn from_code(code: i64) -> ApiCode {
        let known = CODES.into_iter().find(|&(_, n)| n == code);
        known.map_or(ApiCode::Other(code), |(c, _)| c)
    }

    pub fn code(self) -> i64 {
        match self {
            ApiCode::Other(n) => n,
            // Every other variant is in the table.
            c => CODES
                .into_iter()
                .find(|&(k, _)| k == c)
                .map_or(0, |(_, n)| n),
        }
    }

    /// The message the API document gives for the code.
    pub fn message(self) -> &'static str {
        use ApiCode::*;
        match self {
            PasswordNotExist => "Password Not Exist",
            PasswordExpired => "Password Expired",
            RequestExpired => "Request Expired",
            IpInvalid => "IP Invalid",
            SignatureFailed => "Signature Failed",
            UserNotExists => "User Not Exists",
            UserNotMatch => "User Not Match",
            ParamInvalid => "Param Invalid",
            NoFaceDetected => "No Face Detected In The Image",
            MissingParam => "Missing Param",
            AvatarFileIllegal => "Avatar File Illegal",
            NotSupport => "Not Support",
            RpcFailed => "RPC Failed",
            InternalServerError => "Internal Server Error",
            MultiRequestError => "Multi Request Error",
            MethodNotAllowed => "Request Method Not Allowed",
            SearchListNull => "Search List Null",
            DatabaseFull => "Database Full",
            UnknownError => "Unknown Error",
            Other(_) => "Undocumented Error",
        }
    }

    /// What the code means for whoever has to fix it.
    pub fn hint(self) -> &'static str {
        use ApiCode::*;
        match self {
            PasswordNotExist => "the terminal has no API password set; set one on the terminal",
            PasswordExpired => "the terminal's API password has expired; set a new one on the terminal",
            RequestExpired => {
                "the request's timestamp is outside the terminal's 5-minute window: the clocks of \
                 this machine and the terminal differ by more than 5 minutes"
            }
            IpInvalid => "the terminal does not accept API calls from this machine's IP address",
            SignatureFailed => "the signature did not match: the password is wrong",
            UserNotExists => "no such user on the terminal",
            UserNotMatch => "permission denied: the password is wrong (or the clocks differ by more than 5 minutes)",
            ParamInvalid => "the terminal rejected a parameter",
            NoFaceDetected => "the terminal found no face in the photo",
            MissingParam => "a required parameter is missing",
            AvatarFileIllegal => "the photo is not a JPEG the terminal accepts",
            NotSupport => "this terminal does not support the call",
            RpcFailed => "the terminal's internal call failed (timestamp illegal)",
            InternalServerError => "the terminal had an internal error",
            MultiRequestError => "the terminal is busy with another request",
            MethodNotAllowed => "the terminal does not allow this HTTP method here",
            SearchListNull => "nothing matched the search",
            DatabaseFull => "the terminal's database is full",
            UnknownError => "the terminal reported an unknown error",
            Other(_) => "the API document does not list this code",
        }
    }
}

impl fmt::Display for ApiCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.code(), self.message(), self.hint())
    }
}

/// Reads an integer from whatever the firmware sent: `12`, `12.0`, `"12"`, `true`. A number
/// that is no `i64` (`1e30`, `18446744073709551615`, NaN) is `None`: `as` would quietly saturate
/// it into a plausible-looking value.
pub fn lenient_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(f64_to_i64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(f64_to_i64))
        }
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

/// Rounds to the nearest integer, or `None` when that is not an `i64`.
pub fn f64_to_i64(f: f64) -> Option<i64> {
    let r = f.round();
    // 2^63 is exactly representable; every finite float below it (and at or above -2^63) fits.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (r.is_finite() && (-LIMIT..LIMIT).contains(&r)).then_some(r as i64)
}

pub fn lenient_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

/// `true`/`false`, `1`/`0`, `"1"`/`"true"`.
pub fn lenient_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        other => lenient_i64(other).map(|i| i != 0),
    }
}

/// A string field; numbers are turned into text, `null` and the string `"null"` are absent.
pub fn lenient_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s == "null" => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The common answer: `{"code":200,"message":"OK","desc":"",...}`. `message` is not kept: real
/// units write it with a non-breaking space (terminal-dialect.md), so nothing may match on it.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub code: i64,
    pub desc: String,
    /// The whole answer, for `data` / `json` and anything newer firmware adds.
    pub body: Map<String, Value>,
}

impl Envelope {
    pub fn parse(bytes: &[u8]) -> Result<Envelope, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let Value::Object(body) = value else {
            return Err("not a JSON object".into());
        };
        let code = body
            .get("code")
            .and_then(lenient_i64)
            .ok_or_else(|| "no numeric `code`".to_string())?;
        let desc = body
            .get("desc")
            .and_then(lenient_string)
            .unwrap_or_default();
        Ok(Envelope { code, desc, body })
    }

    /// The `data` field, taken out of the answer: a page of photo records is over a megabyte,
    /// and copying it held it twice (heaptrack of a backfill, BENCHMARKS.md).
    pub fn into_data(mut self) -> Option<Value> {
        self.body.remove("data")
    }
}

/// A user as stored on the terminal (UserObject). Unknown fields are kept in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(default, deserialize_with = "de_string")]
    pub user_id: String,
    #[serde(default = "default_user_type", deserialize_with = "de_i64")]
    pub user_type: i64,
    #[serde(default, deserialize_with = "de_string")]
    pub name: String,
    #[serde(default, deserialize_with = "de_string")]
    pub ic_number: String,
    #[serde(default, deserialize_with = "de_string")]
    pub job_number: String,
    #[serde(default, deserialize_with = "de_string")]
    pub mobile: String,
    #[serde(default, deserialize_with = "de_string")]
    pub remark: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub department: Option<String>,
    /// Base64 JPEG. Strangers carry the string `"null"`, which reads as `None`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_string"
    )]
    pub photo: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn default_user_type() -> i64 {
    1
}

fn de_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(lenient_string(&Value::deserialize(d)?).unwrap_or_default())
}

fn de_opt_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(lenient_string(&Value::deserialize(d)?))
}

fn de_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = Value::deserialize(d)?;
    lenient_i64(&v).ok_or_else(|| serde::de::Error::custom(format!("expected an integer, got {v}")))
}

/// User types as the API numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonType {
    Staff,
    Visitor,
    Blacklist,
    Stranger,
}

impl PersonType {
    const ALL: [PersonType; 4] = [
        PersonType::Staff,
        PersonType::Visitor,
        PersonType::Blacklist,
        PersonType::Stranger,
    ];

    pub fn from_code(code: i64) -> Option<PersonType> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    pub fn code(self) -> i64 {
        match self {
            PersonType::Staff => 1,
            PersonType::Visitor => 2,
            PersonType::Blacklist => 3,
            PersonType::Stranger => -1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PersonType::Staff => "staff",
            PersonType::Visitor => "visitor",
            PersonType::Blacklist => "blacklist",
            PersonType::Stranger => "stranger",
        }
    }

    /// By name or by code.
    pub fn parse(s: &str) -> Option<PersonType> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s || t.code().to_string() == s)
    }
}

/// One page of a paged list (`/api/user/list`, `/api/record`).
#[derive(Debug, Clone, Default)]
pub struct Page<T> {
    pub total: u64,
    pub page: u64,
    pub page_size: u64,
    pub total_pages: u64,
    pub items: Vec<T>,
}

impl<T> Page<T> {
    /// The same page with its items turned into others.
    pub fn try_map<U, E>(self, f: impl FnOnce(Vec<T>) -> Result<Vec<U>, E>) -> Result<Page<U>, E> {
        Ok(Page {
            items: f(self.items)?,
            total: self.total,
            page: self.page,
            page_size: self.page_size,
            total_pages: self.total_pages,
        })
    }
}

impl Page<Value> {
    /// Reads `data: {total, pageNum, size, pageSize, totalPage, data: [...]}`, taking the items
    /// out of it rather than copying them.
    pub fn from_data(data: Value) -> Result<Page<Value>, String> {
        let Value::Object(mut obj) = data else {
            return Err("`data` is not an object".into());
        };
        let items = match obj.remove("data") {
            Some(Value::Array(items)) => items,
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return Err("`data.data` is not a list".into()),
        };
        // Counts from the terminal: anything negative or unreadable is 0.
        let num = |k: &str| {
            obj.get(k)
                .and_then(lenient_i64)
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0)
        };
        Ok(Page {
            total: num("total"),
            page: num("pageNum"),
            page_size: num("pageSize"),
            total_pages: num("totalPage"),
            items,
        })
    }
}

/// Device information (DeviceObject). `deviceMoel` is the document's spelling; newer firmware may
/// fix it, so both are read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceInfo {
    #[serde(
        rename = "deviceID",
        deserialize_with = "de_opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_id: Option<String>,
    #[serde(
        rename = "deviceName",
        deserialize_with = "de_opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_name: Option<String>,
    #[serde(
        rename = "appVer",
        deserialize_with = "de_opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub app_version: Option<String>,
    #[serde(
        rename = "webVer",
        deserialize_with = "de_opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub web_version: Option<String>,
    #[serde(
        rename = "deviceMoel",
        alias = "deviceModel",
        deserialize_with = "de_opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub model: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A settings object (NetworkObject, SmartFaceObject, PerParaObject, ...). Kept as JSON: field
/// names drift between firmware versions (`Hacknessenble`), and what is read must be written back
/// unchanged.
pub type ConfigObject = Map<String, Value>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_page_takes_its_items_out_of_the_answer_and_reads_bad_counts_as_zero() {
        let body = json!({
            "code": 200,
            "data": {"total": 3, "pageNum": 2, "pageSize": -1, "totalPage": "x",
                     "data": [{"id": 1}, {"id": 2}]},
        })
        .to_string();
        let env = Envelope::parse(body.as_bytes()).expect("envelope");
        let page = Page::from_data(env.into_data().expect("data")).expect("page");
        assert_eq!(
            (page.total, page.page, page.page_size, page.total_pages),
            (3, 2, 0, 0)
        );
        assert_eq!(page.items, [json!({"id": 1}), json!({"id": 2})]);
        assert!(Page::from_data(json!({"total": 0}))
            .expect("no list")
            .items
            .is_empty());
        assert!(Page::from_data(json!({"data": null}))
            .expect("null list")
            .items
            .is_empty());
        assert!(Page::from_data(json!({"data": {"id": 1}})).is_err());
        assert!(Page::from_data(json!([1, 2])).is_err());
        let none = Envelope::parse(br#"{"code":200}"#).expect("envelope");
        assert_eq!(none.into_data(), None);
    }

    #[test]
    fn every_documented_code_round_trips_and_has_a_meaning() {
        for code in [
            10001, 10002, 10003, 10004, 10005, 20001, 20002, 30001, 30002, 30003, 30004, 40001,
            50001, 50002, 50003, 50004, 50008, 50009, 99999,
        ] {
            let c = ApiCode::from_code(code);
            assert!(!matches!(c, ApiCode::Other(_)), "{code} should be known");
            assert_eq!(c.code(), code);
            assert!(!c.hint().is_empty());
        }
        assert_eq!(ApiCode::from_code(12345), ApiCode::Other(12345));
    }

    #[test]
    fn a_code_reads_as_the_documents_message_then_its_hint() {
        let c = ApiCode::from_code(10005);
        assert_eq!(c.message(), "Signature Failed");
        assert_eq!(
            ApiCode::from_code(30002).message(),
            "No Face Detected In The Image"
        );
        assert_eq!(ApiCode::Other(7).message(), "Undocumented Error");
        assert_eq!(
            c.to_string(),
            format!("10005 Signature Failed ({})", c.hint())
        );
    }

    #[test]
    fn a_person_type_is_read_by_its_name_or_its_code_and_nothing_else() {
        for (text, want) in [
            ("staff", PersonType::Staff),
            ("1", PersonType::Staff),
            ("visitor", PersonType::Visitor),
            ("2", PersonType::Visitor),
            ("blacklist", PersonType::Blacklist),
            ("3", PersonType::Blacklist),
            ("stranger", PersonType::Stranger),
            ("-1", PersonType::Stranger),
        ] {
            assert_eq!(PersonType::parse(text), Some(want), "{text}");
            assert_eq!(PersonType::from_code(want.code()), Some(want));
        }
        for text in ["Staff", "0", "4", "", "staff "] {
            assert_eq!(PersonType::parse(text), None, "{text}");
        }
        assert_eq!(PersonType::from_code(0), None);
    }

    #[test]
    fn request_expired_says_the_clocks_differ() {
        let text = ApiCode::from_code(10003).to_string();
        assert!(
            text.contains("10003") && text.contains("clocks") && text.contains("5 minutes"),
            "{text}"
        );
    }

    #[test]
    fn signature_failed_says_the_password_is_wrong() {
        let text = ApiCode::from_code(10005).to_string();
        assert!(
            text.contains("10005") && text.contains("password is wrong"),
            "{text}"
        );
    }

    #[test]
    fn lenient_readers_accept_the_firmware_spellings() {
        assert_eq!(lenient_i64(&json!(98)), Some(98));
        assert_eq!(lenient_i64(&json!("98")), Some(98));
        assert_eq!(lenient_i64(&json!(98.0)), Some(98));
        assert_eq!(lenient_f64(&json!(97.400002)), Some(97.400002));
        assert_eq!(lenient_bool(&json!(1)), Some(true));
        assert_eq!(lenient_bool(&json!(0)), Some(false));
        assert_eq!(lenient_bool(&json!("true")), Some(true));
        assert_eq!(lenient_string(&json!("null")), None);
        assert_eq!(lenient_string(&json!(7)), Some("7".into()));
    }

    #[test]
    fn a_number_beyond_an_integer_is_none_rather_than_a_saturated_value() {
        assert_eq!(lenient_i64(&json!(1e30)), None);
        assert_eq!(lenient_i64(&json!(-1e30)), None);
        assert_eq!(lenient_i64(&json!(u64::MAX)), None);
        assert_eq!(lenient_i64(&json!("1e30")), None);
        assert_eq!(lenient_i64(&json!("NaN")), None);
        assert_eq!(lenient_i64(&json!(9.2e18)), Some(9_200_000_000_000_000_000));
        assert_eq!(
            lenient_i64(&json!(-9.223_372_036_854_776e18)),
            Some(i64::MIN)
        );
        assert_eq!(lenient_f64(&json!("inf")), None);
    }

    #[test]
    fn a_user_with_unknown_fields_keeps_them() {
        let u: User = serde_json::from_value(json!({
            "userId": "E1", "userType": "2", "name": "Ada", "photo": "null", "interviewee": "Bob"
        }))
        .expect("user parses");
        assert_eq!(u.user_type, 2);
        assert_eq!(u.photo, None);
        assert_eq!(u.extra.get("interviewee"), Some(&json!("Bob")));
        let back = serde_json::to_value(&u).expect("serializes");
        assert_eq!(back["interviewee"], json!("Bob"));
    }

    #[test]
    fn device_info_reads_both_model_spellings() {
        let a: DeviceInfo = serde_json::from_value(json!({"deviceMoel": "X1"})).expect("parses");
        let b: DeviceInfo =
            serde_json::from_value(json!({"deviceModel": "X1", "newField": 1})).expect("parses");
        assert_eq!(a.model.as_deref(), Some("X1"));
        assert_eq!(b.model.as_deref(), Some("X1"));
        assert_eq!(b.extra.get("newField"), Some(&json!(1)));
    }

    #[test]
    fn an_envelope_with_a_string_code_still_parses() {
        let e = Envelope::parse(br#"{"code":"200","message":"OK","desc":""}"#).expect("parses");
        assert_eq!(e.code, 200);
        assert!(Envelope::parse(b"<html>").is_err());
    }
}
