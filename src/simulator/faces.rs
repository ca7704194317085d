//! Who a face is, as the simulated terminal decides it. Pure.
//!
//! A real unit compares face features; the simulator compares pictures. Two photos are the same
//! face when their JPEG bytes are equal once comment segments are left out: every capture of one
//! person differs from the others only in its COM segment (`state::with_comment`), so a stranger's
//! capture, enrolled as a visitor's photo, is that visitor's face at the next recognition.
//!
//! Where the API document is silent, the simulator assumes (README, "The simulator"):
//! - a photo that is not a base64 JPEG, or is over [`MAX_PHOTO`] bytes, is refused with 30004
//!   "Avatar File Illegal";
//! - a JPEG smaller than the smallest face the unit looks for (`faceMinsize`, 30 px by default)
//!   on either side has no face in it: 30002 "No Face Detected In The Image";
//! - a user's `startTime` / `endTime` are Unix seconds, as the record API's are; 0 or absent is
//!   no bound;
//! - a visitor outside their window is not recognized: the record is a stranger's (type -1, no
//!   name), with the capture of their face;
//! - a blacklisted user is recognized, named, and recorded with type 3.

use base64::Engine;

use crate::integrations::terminal::model::{lenient_i64, PersonType, User};

/// The identity of a face: a hash of its picture without comments.
pub type FaceKey = u64;

/// The largest enrolment photo the simulated unit takes (decoded bytes).
pub const MAX_PHOTO: usize = 512 * 1024;

/// What the simulator reads of a JPEG: whose face, and the picture's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Picture {
    pub face: FaceKey,
    pub width: u16,
    pub height: u16,
}

/// The face in a JPEG, or `None` when the bytes are not a JPEG.
pub fn key(jpeg: &[u8]) -> Option<FaceKey> {
    read(jpeg).map(|p| p.face)
}

/// Reads a JPEG's segments up to its scan: `None` when it is not one (no start of image, a
/// segment cut short, no frame header, no scan).
pub fn read(jpeg: &[u8]) -> Option<Picture> {
    const SOI: [u8; 2] = [0xFF, 0xD8];
    const COM: u8 = 0xFE;
    const SOS: u8 = 0xDA;
    if jpeg.get(..2)? != SOI {
        return None;
    }
    let mut kept = Vec::with_capacity(jpeg.len());
    kept.extend_from_slice(&SOI);
    let mut size = None;
    let mut at = 2;
    loop {
        let marker = *jpeg.get(at..at + 2)?.get(1)?;
        if jpeg[at] != 0xFF {
            return None;
        }
        if marker == SOS {
            kept.extend_from_slice(&jpeg[at..]);
            break;
        }
        let len = usize::from(u16::from_be_bytes([*jpeg.get(at + 2)?, *jpeg.get(at + 3)?]));
        if len < 2 {
            return None;
        }
        let end = at.checked_add(2 + len)?;
        let segment = jpeg.get(at..end)?;
        // A start of frame (C0..CF but DHT C4, JPG C8, DAC CC): precision, height, width.
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            let h = u16::from_be_bytes([*segment.get(5)?, *segment.get(6)?]);
            let w = u16::from_be_bytes([*segment.get(7)?, *segment.get(8)?]);
            size = Some((w, h));
        }
        if marker != COM {
            kept.extend_from_slice(segment);
        }
        at = end;
    }
    let (width, height) = size?;
    Some(Picture {
        face: crate::pipeline::record::stable_hash(&kept),
        width,
        height,
    })
}

/// The face in a base64 photo as `UserObject.photo` carries it (the string "null" or an empty
/// one is no photo: `None`; so is anything that is not a base64 JPEG).
pub fn key_of_base64(photo: &str) -> Option<FaceKey> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(photo.trim())
        .ok()?;
    key(&bytes)
}

/// Why an enrolment's photo is refused, as the terminal's error code (see the module's
/// assumptions); `Ok` for no photo (a user may be added without one) and for a face.
/// `min_face`: the unit's `faceMinsize` in pixels.
pub fn check_photo(photo: Option<&str>, min_face: u16) -> Result<(), i64> {
    const ILLEGAL: i64 = 30004;
    const NO_FACE: i64 = 30002;
    let p = match photo.map(str::trim) {
        None | Some("") | Some("null") => return Ok(()),
        Some(p) => p,
    };
    // base64 is 4 characters for 3 bytes: a longer text cannot be under the limit.
    if p.len() / 4 * 3 > MAX_PHOTO + 3 {
        return Err(ILLEGAL);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(p)
        .map_err(|_| ILLEGAL)?;
    if bytes.len() > MAX_PHOTO {
        return Err(ILLEGAL);
    }
    let picture = read(&bytes).ok_or(ILLEGAL)?;
    if picture.width < min_face || picture.height < min_face {
        return Err(NO_FACE);
    }
    Ok(())
}

fn bound(user: &User, field: &str) -> Option<u64> {
    let v = user.extra.get(field).and_then(lenient_i64)?;
    u64::try_from(v).ok().filter(|&s| s > 0)
}

/// What the terminal recognizes `user` as at `now` (Unix seconds): their type, or `None` (a
/// stranger) for a visitor outside their window.
pub fn recognized_as(user: &User, now: u64) -> Option<PersonType> {
    let kind = PersonType::from_code(user.user_type)?;
    if kind == PersonType::Visitor {
        let started = bound(user, "startTime").is_none_or(|s| now >= s);
        let not_ended = bound(user, "endTime").is_none_or(|e| now <= e);
        if !(started && not_ended) {
            return None;
        }
    }
    Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::avatar;
    use crate::simulator::state::with_comment;
    use serde_json::json;

    fn face(seed: u64) -> Vec<u8> {
        avatar::jpeg(seed, avatar::GRAIN)
    }

    fn visitor(start: i64, end: i64) -> User {
        let mut u = User {
            user_id: "V1".into(),
            user_type: 2,
            name: "Ada".into(),
            ..User::default()
        };
        u.extra.insert("startTime".into(), json!(start));
        u.extra.insert("endTime".into(), json!(end));
        u
    }

    #[test]
    fn two_captures_of_one_face_are_the_same_face() {
        let f = face(7);
        assert_eq!(key(&with_comment(&f, 1)), key(&with_comment(&f, 2)));
        assert_eq!(key(&with_comment(&f, 1)), key(&f));
    }

    #[test]
    fn two_people_are_two_faces() {
        assert_ne!(key(&face(7)), key(&face(8)));
    }

    #[test]
    fn bytes_that_are_not_a_jpeg_have_no_face() {
        assert_eq!(key(b"GIF89a...."), None);
        assert_eq!(key(&[]), None);
        assert_eq!(
            key(&[0xFF, 0xD8]),
            None,
            "a start of image and nothing else"
        );
        let f = face(7);
        assert_eq!(key(&f[..20]), None, "cut inside a segment");
        let mut zero_len = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x00];
        zero_len.extend_from_slice(&f[2..]);
        assert_eq!(key(&zero_len), None, "a segment length below 2");
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn an_avatar_is_read_with_its_size() {
        let p = read(&face(3)).expect("a JPEG");
        assert!(p.width >= 100 && p.height >= 100, "{p:?}");
    }

    #[test]
    fn an_enrolment_photo_must_be_a_base64_jpeg() {
        assert_eq!(check_photo(Some(&b64(&face(3))), 30), Ok(()));
        assert_eq!(check_photo(None, 30), Ok(()));
        assert_eq!(check_photo(Some("null"), 30), Ok(()));
        assert_eq!(check_photo(Some(""), 30), Ok(()));
        let png = b64(b"\x89PNG\r\n\x1a\n....");
        assert_eq!(check_photo(Some(&png), 30), Err(30004));
        assert_eq!(check_photo(Some("not base64 at all!"), 30), Err(30004));
    }

    #[test]
    fn a_picture_smaller_than_the_smallest_face_has_no_face() {
        let p = read(&face(3)).expect("a JPEG");
        let side = p.width.min(p.height);
        assert_eq!(check_photo(Some(&b64(&face(3))), side), Ok(()));
        assert_eq!(check_photo(Some(&b64(&face(3))), side + 1), Err(30002));
    }

    #[test]
    fn a_photo_over_the_limit_is_refused_before_it_is_decoded() {
        let mut big = face(3);
        let fill = MAX_PHOTO + 1 - big.len();
        // A COM segment per 65,000 bytes keeps it a JPEG: only the size is wrong.
        let mut left = fill;
        let mut comments = Vec::new();
        while left > 0 {
            let n = left.min(65_000);
            comments.extend_from_slice(&[0xFF, 0xFE]);
            comments.extend_from_slice(&u16::try_from(n + 2).expect("fits").to_be_bytes());
            comments.extend(std::iter::repeat_n(b'x', n));
            left -= n;
        }
        big.splice(2..2, comments);
        assert!(big.len() > MAX_PHOTO);
        assert_eq!(check_photo(Some(&b64(&big)), 30), Err(30004));
        assert_eq!(
            check_photo(Some(&"A".repeat(MAX_PHOTO * 2)), 30),
            Err(30004)
        );
    }

    #[test]
    fn a_visitor_is_recognized_only_inside_their_window() {
        let v = visitor(1_000, 2_000);
        assert_eq!(recognized_as(&v, 999), None);
        assert_eq!(recognized_as(&v, 1_000), Some(PersonType::Visitor));
        assert_eq!(recognized_as(&v, 2_000), Some(PersonType::Visitor));
        assert_eq!(recognized_as(&v, 2_001), None);
    }

    #[test]
    fn a_visitor_without_bounds_is_always_recognized() {
        let mut v = visitor(0, 0);
        assert_eq!(recognized_as(&v, 5), Some(PersonType::Visitor));
        v.extra.clear();
        assert_eq!(recognized_as(&v, u64::MAX), Some(PersonType::Visitor));
    }

    #[test]
    fn staff_and_blacklisted_people_ignore_a_window() {
        let mut u = visitor(1_000, 2_000);
        u.user_type = 3;
        assert_eq!(recognized_as(&u, 5_000), Some(PersonType::Blacklist));
        u.user_type = 1;
        assert_eq!(recognized_as(&u, 5_000), Some(PersonType::Staff));
    }

    #[test]
    fn a_user_of_an_unknown_type_is_not_recognized() {
        let mut u = visitor(0, 0);
        u.user_type = 9;
        assert_eq!(recognized_as(&u, 5), None);
    }
}
