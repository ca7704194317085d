// Over 450 lines: the simulated terminal's whole state (users, records, settings, faults) in one place, plus tests.
//! The simulated terminal's memory: users, records, settings, counters and faults. Pure data and
//! decisions; the HTTP and WebSocket layers lock it briefly and never across an `.await`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::{avatar, cjson, faces};
use crate::integrations::terminal::model::{lenient_i64, PersonType, User};
use crate::integrations::terminal::sign;
use crate::secret::Secret;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

const FIRST_NAMES: &[&str] = &[
    "Ada", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Edsger", "Radia",
    "Alan", "Hedy", "Niklaus", "Karen", "Tim", "Sophie",
];
const DEPARTMENTS: &[&str] = &["R&D", "Sales", "Operations", "Support"];

/// A record's UserObject fields in the terminal's order, with what a stranger, or a user without
/// the field, carries: the number, or (`None`) the empty string.
const USER_FIELDS: [(&str, Option<i64>); 21] = [
    ("startTime", Some(0)),
    ("userId", None),
    ("gender", Some(0)),
    ("jobNumber", None),
    ("position", None),
    ("userType", Some(-1)),
    ("purpose", None),
    ("birthday", Some(0)),
    ("department", None),
    ("prompt", None),
    ("description", None),
    ("mobile", None),
    ("remark", None),
    ("entryTime", Some(0)),
    ("title", None),
    ("endTime", Some(0)),
    ("name", None),
    ("mail", None),
    ("icNumber", None),
    ("idNumber", None),
    ("comeFrom", None),
];

/// A person's face: the JPEG, and its base64 for the `photo` field, drawn once and shared.
#[derive(Debug, Clone)]
pub struct Face {
    pub jpeg: Arc<[u8]>,
    pub base64: Arc<str>,
}

impl Face {
    fn draw(seed: u64) -> Face {
        let jpeg: Arc<[u8]> = Arc::from(avatar::jpeg(seed, avatar::GRAIN));
        let base64 = Arc::from(base64::engine::general_purpose::STANDARD.encode(&jpeg[..]));
        Face { jpeg, base64 }
    }
}

/// A stored recognition record. Photos are shared, not copied per record, and rendered to base64
/// only when the record is sent.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// Every field but the photos, in the terminal's order (`photo` holds a placeholder).
    pub fields: Map<String, Value>,
    /// The registered photo (`photo`); strangers have none and send the string "null".
    pub registered: Option<Arc<str>>,
    /// The capture (`signAvatar`).
    pub capture: Option<Arc<[u8]>>,
    /// Makes each capture's bytes unique, as a camera's are (a JPEG comment).
    pub capture_no: u64,
    pub sign_time: u64,
    pub person_type: i64,
}

impl StoredRecord {
    /// The SignObject with the photos in place, in the terminal's field order.
    pub fn to_value(&self) -> Value {
        let mut m = self.fields.clone();
        let registered = self.registered.as_deref().unwrap_or("null");
        m.insert("photo".into(), Value::String(registered.to_string()));
        let capture = match &self.capture {
            Some(jpeg) => base64::engine::general_purpose::STANDARD
                .encode(with_comment(jpeg, self.capture_no)),
            None => String::new(),
        };
        m.insert("signAvatar".into(), Value::String(capture));
        Value::Object(m)
    }

    /// The WebSocket push frame, byte for byte as the terminal prints it.
    pub fn push_frame(&self) -> String {
        let mut top = Map::new();
        top.insert("code".into(), json!(30000));
        // A non-breaking space, as real units send: never match on `message`.
        top.insert("message".into(), json!("push\u{a0}record"));
        top.insert("desc".into(), json!(""));
        top.insert("data".into(), self.to_value());
        cjson::print(&Value::Object(top))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OpenEvent {
    pub remark: Option<String>,
    pub at_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Faults {
    /// The WebSocket keeps TCP open but neither sends nor reads (pings go unanswered).
    pub silent: bool,
    /// The password is refused: 20002 on the WebSocket, 10005 over HTTP.
    pub refuse_auth: bool,
    /// Every HTTP answer waits this long first.
    #[serde(with = "humantime_serde")]
    pub http_delay: Duration,
    /// The next `count` HTTP calls fail with `code` (an API code, or an HTTP status below 1000).
    pub http_error: Option<HttpErrorFault>,
}

#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct HttpErrorFault {
    pub code: i64,
    pub count: u32,
}

pub struct State {
    pub password: Secret,
    pub users: BTreeMap<String, User>,
    pub records: VecDeque<StoredRecord>,
    pub max_records: usize,
    pub next_record_id: u64,
    pub pushed: u64,
    pub opens: Vec<OpenEvent>,
    pub reboots: u64,
    pub sync_times: Vec<u64>,
    pub json_cmds: Vec<Value>,
    pub network: Map<String, Value>,
    pub smart_face: Map<String, Value>,
    pub peripheral: Map<String, Value>,
    pub device: Map<String, Value>,
    /// Terminal clock minus real clock.
    pub clock_skew_ms: i64,
    pub faults: Faults,
    rng: fastrand::Rng,
    /// Photos are drawn on first use (a few ms each) and then shared.
    stranger_photos: Vec<Face>,
    user_photos: BTreeMap<String, Face>,
    captures: u64,
    photos: bool,
    seed: u64,
}

/// The JPEG with a COM segment after SOI: still a valid JPEG, but no two captures are the same
/// bytes (consumers and the bridge may rely on that, as they can with a real camera).
pub fn with_comment(jpeg: &[u8], n: u64) -> Vec<u8> {
    if jpeg.len() < 2 {
        return jpeg.to_vec();
    }
    let text = format!("face2mqtt simulator capture {n}");
    let len = (text.len() + 2) as u16;
    let mut out = Vec::with_capacity(jpeg.len() + text.len() + 4);
    out.extend_from_slice(&jpeg[..2]);
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&jpeg[2..]);
    out
}

impl State {
    pub fn new(password: Secret, seed: u64, max_records: usize) -> State {
        let mut s = State {
            password,
            users: BTreeMap::new(),
            records: VecDeque::new(),
            max_records: max_records.max(1),
            next_record_id: 1,
            pushed: 0,
            opens: Vec::new(),
            reboots: 0,
            sync_times: Vec::new(),
            json_cmds: Vec::new(),
            // Settings the terminal answers with when asked (documented fields, plus the
            // firmware's own spellings so clients see the real drift).
            network: obj(
                json!({"dhcpEnable": 0, "ipAddress": "192.168.1.50", "subMask": "255.255.255.0",
                       "DNS1": "192.168.1.1", "DNS2": "8.8.8.8", "defRout": "192.168.1.1"}),
            ),
            smart_face: obj(
                json!({"faceEnable": 1, "faceCmpEnable": 1, "faceThre": 6, "faceMinsize": 80,
                       "faceMaxsize": 400, "faceInterval": 6, "imgType": 0, "maskDetecEnable": 1,
                       "tempDetecEnable": 1, "TempUnit": 0, "tempWarnThre": 37.3,
                       "ftpPutImgEnable": 0, "faceFrame": 1, "StrTempCkEnable": 1,
                       "Hacknessenble": 0}),
            ),
            peripheral: obj(
                json!({"detecTemMod": 1, "alarmType": 0, "voiceProswitch": 1, "tempNormal": 1,
                       "maskNormal": 1, "cmpNormal": 1, "RecordOpen": 1, "unlockControl": 1,
                       "unlockOuttime": 100}),
            ),
            device: obj(
                json!({"deviceID": "SIM0000000000001", "deviceName": "face2mqtt simulator",
                       "appVer": "V2.1.7-sim", "webVer": "V1.0.3-sim",
                       "deviceMoel": "AATSS V2 PRO"}),
            ),
            clock_skew_ms: 0,
            faults: Faults::default(),
            rng: fastrand::Rng::with_seed(seed),
            stranger_photos: Vec::new(),
            user_photos: BTreeMap::new(),
            captures: 0,
            photos: true,
            seed,
        };
        s.seed_roster();
        s
    }

    /// Staff, a couple of visitors and one blacklisted person, each with their own face.
    fn seed_roster(&mut self) {
        for (i, first) in FIRST_NAMES.iter().enumerate() {
            let ty = match i {
                0..=11 => PersonType::Staff,
                12..=14 => PersonType::Visitor,
                _ => PersonType::Blacklist,
            };
            let id = format!("E{:03}", i + 1);
            let user = User {
                user_id: id.clone(),
                user_type: ty.code(),
                name: (*first).to_string(),
                job_number: format!("J{:04}", 100 + i),
                department: Some(DEPARTMENTS[i % DEPARTMENTS.len()].to_string()),
                ..User::default()
            };
            self.users.insert(id, user);
        }
    }

    pub fn with_photos(mut self, photos: bool) -> State {
        self.photos = photos;
        self
    }

    /// Switches photos on or off for the recognitions from now on (a mix of records with and
    /// without photos, as benchmarks need).
    pub fn set_photos(&mut self, photos: bool) {
        self.photos = photos;
    }

    /// The face of a known user, the same picture every time.
    fn user_photo(&mut self, user_id: &str) -> Face {
        let seed = self
            .seed
            .wrapping_add(crate::pipeline::record::stable_hash(user_id.as_bytes()));
        self.user_photos
            .entry(user_id.to_string())
            .or_insert_with(|| Face::draw(seed))
            .clone()
    }

    /// One of a few strangers' faces.
    fn stranger_photo(&mut self) -> Face {
        const STRANGERS: usize = 4;
        let i = self.rng.usize(0..STRANGERS);
        while self.stranger_photos.len() < STRANGERS {
            let n = self.stranger_photos.len() as u64;
            self.stranger_photos
                .push(Face::draw(self.seed.wrapping_add(1000 + n)));
        }
        self.stranger_photos[i].clone()
    }

    pub fn terminal_now_ms(&self) -> u64 {
        let now = i64::try_from(sign::now_ms()).unwrap_or(i64::MAX);
        u64::try_from(now.saturating_add(self.clock_skew_ms)).unwrap_or(0)
    }

    /// The terminal's checks on `timestamp` and `sign`: the 5-minute window (when `window`),
    /// then the signature. A refusal is the terminal's error code: 30003 for a missing or
    /// unreadable pair, 10003 outside the window, 10005 for a wrong signature.
    pub fn check_auth(&self, query: &BTreeMap<String, String>, window: bool) -> Result<(), i64> {
        let (Some(Ok(ts)), Some(presented)) = (
            query.get("timestamp").map(|t| t.parse::<u64>()),
            query.get("sign"),
        ) else {
            return Err(30003);
        };
        if window && self.terminal_now_ms().abs_diff(ts) > 5 * 60 * 1000 {
            return Err(10003);
        }
        if self.faults.refuse_auth || !sign::verify(ts, presented, &self.password) {
            return Err(10005);
        }
        Ok(())
    }

    /// A random kind with the site mix: mostly staff, some visitors and strangers, a few
    /// blacklisted.
    pub fn random_kind(&mut self) -> PersonType {
        match self.rng.u8(0..100) {
            0..=59 => PersonType::Staff,
            60..=74 => PersonType::Visitor,
            75..=79 => PersonType::Blacklist,
            _ => PersonType::Stranger,
        }
    }

    /// The face a user shows the camera: their enrolled photo when it is a JPEG, else one drawn
    /// for them (the seeded roster has no photos).
    fn face_of(&mut self, user: &User) -> Face {
        let enrolled = user.photo.as_deref().and_then(|p| {
            let jpeg = base64::engine::general_purpose::STANDARD
                .decode(p.trim())
                .ok()?;
            faces::key(&jpeg)?;
            Some(Face {
                jpeg: Arc::from(jpeg),
                base64: Arc::from(p.trim()),
            })
        });
        enrolled.unwrap_or_else(|| self.user_photo(&user.user_id))
    }

    /// Makes one recognition of `kind`, stores it and returns it. Only people the terminal would
    /// recognize as `kind` now are candidates (a visitor outside their window is not one).
    pub fn recognize(&mut self, kind: PersonType) -> StoredRecord {
        let now = self.terminal_now_ms() / 1000;
        let candidates: Vec<&User> = self
            .users
            .values()
            .filter(|u| faces::recognized_as(u, now) == Some(kind))
            .collect();
        let user = if kind == PersonType::Stranger || candidates.is_empty() {
            None
        } else {
            Some(candidates[self.rng.usize(0..candidates.len())].clone())
        };
        let face = match &user {
            Some(u) if self.photos => Some(self.face_of(u)),
            _ => None,
        };
        let capture = match &face {
            Some(f) => Some(f.jpeg.clone()),
            None if self.photos => Some(self.stranger_photo().jpeg),
            None => None,
        };
        let registered = user
            .as_ref()
            .and_then(|u| u.photo.clone().map(Arc::<str>::from))
            .or_else(|| face.map(|f| f.base64));
        self.record(user, kind, capture, registered)
    }

    /// Someone shows this face to the camera: an enrolled user whose photo is this face is
    /// recognized as [`faces::recognized_as`] says; anyone else is a stranger. The capture is
    /// the face shown.
    pub fn recognize_face(&mut self, jpeg: Arc<[u8]>) -> StoredRecord {
        let now = self.terminal_now_ms() / 1000;
        let key = faces::key(&jpeg);
        let known = self
            .users
            .values()
            .filter(|u| key.is_some() && u.photo.as_deref().and_then(faces::key_of_base64) == key)
            .find_map(|u| faces::recognized_as(u, now).map(|kind| (u.clone(), kind)));
        let (user, kind) = match known {
            Some((u, kind)) => (Some(u), kind),
            None => (None, PersonType::Stranger),
        };
        let registered = user
            .as_ref()
            .and_then(|u| u.photo.clone().map(Arc::<str>::from));
        let capture = self.photos.then_some(jpeg);
        self.record(user, kind, capture, registered)
    }

    /// The smallest face the unit looks for (`faceMinsize`, pixels); its documented range is
    /// 30 to 300.
    pub fn min_face(&self) -> u16 {
        let v = self
            .smart_face
            .get("faceMinsize")
            .and_then(lenient_i64)
            .unwrap_or(80);
        u16::try_from(v.clamp(30, 300)).unwrap_or(80)
    }

    /// The face of the newest record's capture (a person who comes back), if it had one.
    pub fn newest_capture(&self) -> Option<Arc<[u8]>> {
        self.records.back().and_then(|r| r.capture.clone())
    }

    /// Builds a record of `user` (none: a stranger) recognized as `kind`, stores it and returns it.
    fn record(
        &mut self,
        user: Option<User>,
        kind: PersonType,
        capture: Option<Arc<[u8]>>,
        registered: Option<Arc<str>>,
    ) -> StoredRecord {
        let sign_time = self.terminal_now_ms() / 1000;
        let fahrenheit = self.smart_face.get("TempUnit").and_then(lenient_i64) == Some(1);
        let celsius: f32 = if self.rng.u8(0..20) == 0 {
            37.6 + self.rng.f32()
        } else {
            36.1 + self.rng.f32() * 1.1
        };
        let state = if celsius >= 37.3 {
            1
        } else if celsius < 35.5 {
            -1
        } else {
            0
        };
        let temperature = if fahrenheit {
            ((celsius * 9.0 / 5.0 + 32.0) * 10.0).round() / 10.0
        } else {
            (celsius * 10.0).round() / 10.0
        };
        let mask = self.rng.bool();

        let known = user.is_some();
        // A known user's fields as the terminal stores them, the photo left out (it is filled
        // in when the record is sent, see `to_value`).
        let mut stored = match user.map(|u| serde_json::to_value(User { photo: None, ..u })) {
            Some(Ok(Value::Object(m))) => m,
            _ => Map::new(),
        };
        let mut m: Map<String, Value> = USER_FIELDS
            .iter()
            .map(|&(k, default)| {
                let v = stored
                    .remove(k)
                    .unwrap_or_else(|| default.map_or_else(|| json!(""), Value::from));
                (k.to_string(), v)
            })
            .collect();
        // Strangers carry the *string* "null"; known users their registered photo.
        m.insert("photo".into(), json!("null"));
        let id = if known {
            let id = self.next_record_id;
            self.next_record_id += 1;
            id
        } else {
            0 // strangers have record id 0 on real units
        };
        // Drawn for strangers too: the seeded sequence of records stays the same.
        let input_type = match self.rng.u8(0..20) {
            0 if known => 3,
            1 if known => 2,
            _ => 1,
        };
        let similarity = if known {
            self.rng.u8(78..99)
        } else {
            self.rng.u8(20..60)
        };
        m.extend(
            [
                ("id", json!(id)),
                ("signTime", json!(sign_time)),
                ("type", json!(kind.code())),
                ("inputType", json!(input_type)),
                ("similarity", json!(similarity)),
                ("temperatureState", json!(state)),
                ("wearMask", json!(mask as i64)),
                ("wearMaskAlarm", json!(0)),
                ("temperature", cjson::float32(temperature)),
                ("Temperatureunit", json!(fahrenheit as i64)),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );

        self.captures += 1;
        let rec = StoredRecord {
            fields: m,
            registered,
            capture,
            capture_no: self.captures,
            sign_time,
            person_type: kind.code(),
        };
        self.store(rec.clone());
        rec
    }

    /// Replaces the newest stored record (a recognition edited before its push).
    pub fn replace_newest(&mut self, rec: StoredRecord) {
        if let Some(last) = self.records.back_mut() {
            *last = rec;
        }
    }

    pub fn store(&mut self, rec: StoredRecord) {
        self.records.push_back(rec);
        while self.records.len() > self.max_records {
            self.records.pop_front();
        }
    }

    /// `GET /api/record`: newest first, filtered, paged.
    pub fn record_page(&self, q: &BTreeMap<String, String>) -> Value {
        let day = self.terminal_now_ms() / 1000 / 86_400 * 86_400;
        let num = |k: &str, d: i64| {
            q.get(k)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(d)
        };
        let start = num("startTime", day as i64);
        let end = num("endTime", day as i64 + 86_399);
        let ty = num("type", 0);
        // Query values are whatever the client sent: no cast or product may overflow.
        let page = usize::try_from(num("page", 1).max(1)).unwrap_or(usize::MAX);
        let size = usize::try_from(num("size", 20).clamp(1, 1000)).unwrap_or(1000);
        let user_id = q.get("userId").filter(|s| !s.is_empty() && *s != "0");
        let username = q.get("username").filter(|s| !s.is_empty());
        let is = |r: &StoredRecord, k: &str, want: Option<&String>| {
            want.is_none_or(|w| r.fields.get(k).and_then(Value::as_str) == Some(w.as_str()))
        };
        let matching: Vec<&StoredRecord> = self
            .records
            .iter()
            .rev()
            .filter(|r| (r.sign_time as i64) >= start && (r.sign_time as i64) <= end)
            .filter(|r| ty == 0 || r.person_type == ty)
            .filter(|r| is(r, "userId", user_id) && is(r, "name", username))
            .collect();
        paged(&matching, page, size, |r| r.to_value())
    }

    /// `GET /api/user/list`.
    pub fn user_page(&self, q: &BTreeMap<String, String>) -> Value {
        let page = q
            .get("page")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        let size = q
            .get("size")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(10)
            .clamp(1, 10);
        let ty = q.get("type").and_then(|v| v.parse::<i64>().ok());
        let by = |k: &str| q.get(k).filter(|s| !s.is_empty());
        let matching: Vec<&User> = self
            .users
            .values()
            .filter(|u| ty.is_none_or(|t| u.user_type == t))
            .filter(|u| by("userId").is_none_or(|id| &u.user_id == id))
            .filter(|u| by("name").is_none_or(|n| &u.name == n))
            .collect();
        paged(&matching, page, size, |u| {
            serde_json::to_value(u).unwrap_or(Value::Null)
        })
    }

    pub fn status(&self) -> Value {
        json!({
            "users": self.users.len(),
            "records": self.records.len(),
            "pushed": self.pushed,
            "last_record_id": self.next_record_id - 1,
            "opens": self.opens,
            "reboots": self.reboots,
            "sync_times": self.sync_times,
            "json_cmds": self.json_cmds.len(),
            "clock_skew_ms": self.clock_skew_ms,
            "faults": self.faults,
        })
    }
}

/// Page `page` (from 1) of `size` of `matching`, in the terminal's page envelope.
fn paged<T>(matching: &[T], page: usize, size: usize, item: impl Fn(&T) -> Value) -> Value {
    let items: Vec<Value> = matching
        .iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .map(item)
        .collect();
    let total = matching.len();
    json!({
        "total": total,
        "pageNum": page,
        "size": items.len(),
        "pageSize": size,
        "totalPage": total.div_ceil(size),
        "data": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::new(Secret::new("123456"), 1, 100)
    }

    #[test]
    fn a_stranger_has_id_zero_an_empty_user_id_and_the_string_null_photo() {
        let mut s = state();
        let r = s.recognize(PersonType::Stranger);
        assert_eq!(r.fields["id"], json!(0));
        assert_eq!(r.fields["userId"], json!(""));
        assert_eq!(r.fields["photo"], json!("null"));
        assert_eq!(r.fields["type"], json!(-1));
        assert!(r.capture.is_some());
        assert_eq!(r.to_value()["photo"], json!("null"));
    }

    /// Enrols the capture of `record` (base64, with its comment, as a consumer of the record
    /// has it) as a user of `user_type` named Ada, valid from `start` to `end`.
    fn enrol(s: &mut State, record: &StoredRecord, user_type: i64, start: u64, end: u64) {
        let photo = record.to_value()["signAvatar"]
            .as_str()
            .expect("capture")
            .to_string();
        let mut u = User {
            user_id: "V100".into(),
            user_type,
            name: "Ada".into(),
            photo: Some(photo),
            ..User::default()
        };
        u.extra.insert("startTime".into(), json!(start));
        u.extra.insert("endTime".into(), json!(end));
        s.users.insert(u.user_id.clone(), u);
    }

    #[test]
    fn a_stranger_enrolled_from_their_capture_is_recognized_by_name_next_time() {
        let mut s = state();
        let first = s.recognize(PersonType::Stranger);
        let now = s.terminal_now_ms() / 1000;
        enrol(&mut s, &first, 2, now - 60, now + 3600);
        let again = s.recognize_face(s.newest_capture().expect("a capture"));
        assert_eq!(again.fields["type"], json!(2));
        assert_eq!(again.fields["userType"], json!(2));
        assert_eq!(again.fields["name"], json!("Ada"));
        assert_eq!(again.fields["userId"], json!("V100"));
        assert_ne!(
            again.fields["id"],
            json!(0),
            "a known person has a record id"
        );
    }

    #[test]
    fn a_visitor_outside_their_window_is_a_stranger_again() {
        let mut s = state();
        let first = s.recognize(PersonType::Stranger);
        let now = s.terminal_now_ms() / 1000;
        enrol(&mut s, &first, 2, now - 7200, now - 3600);
        let again = s.recognize_face(first.capture.clone().expect("a capture"));
        assert_eq!(again.fields["type"], json!(-1));
        assert_eq!(again.fields["name"], json!(""));
        assert_eq!(again.fields["id"], json!(0));
        assert!(
            again.capture.is_some(),
            "the capture of their face, as for any stranger"
        );
    }

    #[test]
    fn an_expired_visitor_is_never_drawn_as_a_visitor() {
        let mut s = state();
        s.users.retain(|_, u| u.user_type != 2);
        let first = s.recognize(PersonType::Stranger);
        let now = s.terminal_now_ms() / 1000;
        enrol(&mut s, &first, 2, now - 7200, now - 3600);
        for _ in 0..20 {
            assert_eq!(s.recognize(PersonType::Visitor).fields["userId"], json!(""));
        }
        enrol(&mut s, &first, 2, now - 60, now + 3600);
        assert_eq!(
            s.recognize(PersonType::Visitor).fields["userId"],
            json!("V100")
        );
    }

    #[test]
    fn a_blacklisted_face_is_recorded_as_blacklisted_with_its_name() {
        let mut s = state();
        let first = s.recognize(PersonType::Stranger);
        enrol(&mut s, &first, 3, 0, 0);
        let again = s.recognize_face(first.capture.clone().expect("a capture"));
        assert_eq!(again.fields["type"], json!(3));
        assert_eq!(again.fields["name"], json!("Ada"));
    }

    #[test]
    fn an_enrolled_visitor_drawn_at_random_shows_their_enrolled_face() {
        let mut s = state();
        s.users.retain(|_, u| u.user_type != 2);
        let first = s.recognize(PersonType::Stranger);
        enrol(&mut s, &first, 2, 0, 0);
        let again = s.recognize(PersonType::Visitor);
        assert_eq!(
            faces::key(again.capture.as_deref().expect("capture")),
            faces::key(first.capture.as_deref().expect("capture"))
        );
    }

    #[test]
    fn a_face_no_one_enrolled_is_a_stranger() {
        let mut s = state();
        let r = s.recognize_face(avatar::jpeg(99, avatar::GRAIN).into());
        assert_eq!(r.fields["type"], json!(-1));
    }

    #[test]
    fn photos_switched_off_and_on_apply_to_the_next_recognitions() {
        let mut s = state();
        s.set_photos(false);
        let without = s.recognize(PersonType::Staff).to_value();
        assert_eq!(without["signAvatar"], json!(""));
        assert_eq!(without["photo"], json!("null"));
        s.set_photos(true);
        let with = s.recognize(PersonType::Staff).to_value();
        assert_ne!(with["signAvatar"], json!(""));
        assert_ne!(with["photo"], json!("null"));
    }

    #[test]
    fn every_capture_is_a_distinct_valid_jpeg() {
        let mut s = state();
        let a = s.recognize(PersonType::Stranger).to_value();
        let b = s.recognize(PersonType::Stranger).to_value();
        assert_ne!(a["signAvatar"], b["signAvatar"]);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(a["signAvatar"].as_str().unwrap_or(""))
            .expect("base64");
        let mut d = jpeg_decoder::Decoder::new(&bytes[..]);
        d.decode().expect("still decodes with the comment segment");
    }

    #[test]
    fn without_photos_records_carry_none() {
        let mut s = state().with_photos(false);
        for kind in [PersonType::Staff, PersonType::Stranger] {
            let v = s.recognize(kind).to_value();
            assert_eq!(v["signAvatar"], json!(""));
            assert_eq!(v["photo"], json!("null"));
        }
    }

    #[test]
    fn known_people_get_increasing_record_ids() {
        let mut s = state();
        let a = s.recognize(PersonType::Staff);
        let b = s.recognize(PersonType::Visitor);
        assert_eq!(a.fields["id"], json!(1));
        assert_eq!(b.fields["id"], json!(2));
    }

    #[test]
    fn the_push_frame_has_the_fields_in_the_terminals_order() {
        let mut s = state();
        let frame = s.recognize(PersonType::Staff).push_frame();
        let keys: Vec<&str> = frame
            .lines()
            .filter(|l| l.starts_with("\t\t\""))
            .filter_map(|l| l.trim_start_matches('\t').split('"').nth(1))
            .collect();
        let expected = "startTime userId gender jobNumber position userType purpose birthday department prompt \
            description mobile remark entryTime title endTime name mail icNumber idNumber comeFrom photo id \
            signTime type inputType similarity temperatureState wearMask wearMaskAlarm temperature \
            Temperatureunit signAvatar";
        assert_eq!(
            keys.join(" "),
            expected.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }

    #[test]
    fn the_store_keeps_only_the_newest_records() {
        let mut s = State::new(Secret::new("x"), 1, 3);
        for _ in 0..5 {
            s.recognize(PersonType::Staff);
        }
        assert_eq!(s.records.len(), 3);
        assert_eq!(
            s.records.front().map(|r| r.fields["id"].clone()),
            Some(json!(3))
        );
    }

    #[test]
    fn records_are_paged_newest_first() {
        let mut s = state();
        for _ in 0..5 {
            s.recognize(PersonType::Staff);
        }
        let q: BTreeMap<String, String> = [
            ("startTime", "0"),
            ("endTime", "99999999999"),
            ("page", "2"),
            ("size", "2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let page = s.record_page(&q);
        assert_eq!(page["total"], json!(5));
        assert_eq!(page["totalPage"], json!(3));
        let ids: Vec<i64> = page["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_i64())
            .collect();
        assert_eq!(ids, vec![3, 2]);
    }

    #[test]
    fn a_request_older_than_five_minutes_is_expired() {
        let s = state();
        let ts = sign::now_ms() - 6 * 60 * 1000;
        let q: BTreeMap<String, String> = [
            ("timestamp".to_string(), ts.to_string()),
            ("sign".to_string(), sign::sign(ts, &s.password)),
        ]
        .into_iter()
        .collect();
        assert_eq!(s.check_auth(&q, true), Err(10003), "expired");
        assert_eq!(
            s.check_auth(&q, false),
            Ok(()),
            "a time sync is checked by its signature only"
        );
    }

    #[test]
    fn a_wrong_password_is_a_bad_signature() {
        let s = state();
        let ts = sign::now_ms();
        let q: BTreeMap<String, String> = [
            ("timestamp".to_string(), ts.to_string()),
            ("sign".to_string(), sign::sign(ts, &Secret::new("nope"))),
        ]
        .into_iter()
        .collect();
        assert_eq!(s.check_auth(&q, true), Err(10005), "a bad signature");
    }
}
