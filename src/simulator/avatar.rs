//! Capture photos: real, decodable 300x300 baseline JPEGs of about 43 KB, like the terminal's.
//!
//! Drawn rather than shipped so that each person gets a distinct picture and the repository holds
//! no binary blobs. The grain is what makes the size realistic: a flat drawing compresses to a
//! few kilobytes, a camera frame does not.

use jpeg_encoder::{ColorType, Encoder};

pub const SIZE: u16 = 300;

/// Grain that lands the JPEG near the terminal's ~43 KB (checked by the size test below).
pub const GRAIN: u8 = 47;

/// A face-like picture for `seed` (same seed, same bytes).
pub fn jpeg(seed: u64, grain: u8) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let n = SIZE as usize;
    let bg = [rng.u8(40..200), rng.u8(40..200), rng.u8(40..200)];
    let skin = [rng.u8(150..240), rng.u8(100..190), rng.u8(80..160)];
    let mut px = vec![0u8; n * n * 3];
    for y in 0..n {
        for x in 0..n {
            let (fx, fy) = (x as f32 - 150.0, y as f32 - 140.0);
            let in_face = (fx / 85.0).powi(2) + (fy / 110.0).powi(2) <= 1.0;
            let eye = |cx: f32| ((x as f32 - cx).powi(2) + (y as f32 - 115.0).powi(2)) < 120.0;
            let mouth = (y as f32 - 195.0).abs() < 5.0 && fx.abs() < 35.0;
            let base = if eye(118.0) || eye(182.0) || (in_face && mouth) {
                [30, 20, 20]
            } else if in_face {
                skin
            } else {
                let shade = (y as f32 / n as f32 * 40.0) as u8;
                bg.map(|c| c.saturating_sub(shade))
            };
            let i = (y * n + x) * 3;
            for c in 0..3 {
                let noise = rng.i16(-(grain as i16)..=grain as i16);
                px[i + c] = (base[c] as i16 + noise).clamp(0, 255) as u8;
            }
        }
    }
    let mut out = Vec::with_capacity(48 * 1024);
    let encoder = Encoder::new(&mut out, 80);
    // Baseline (not progressive) is the encoder's default, as the terminal sends.
    match encoder.encode(&px, SIZE, SIZE, ColorType::Rgb) {
        Ok(()) => out,
        // Encoding a fixed-size in-memory RGB buffer cannot fail short of a bug; an empty
        // photo is then the honest answer (the record is still pushed).
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_is_a_decodable_300_by_300_jpeg_of_about_43_kb() {
        let bytes = jpeg(7, GRAIN);
        let mut d = jpeg_decoder::Decoder::new(&bytes[..]);
        let pixels = d.decode().expect("decodes");
        let info = d.info().expect("has info");
        assert_eq!((info.width, info.height), (300, 300));
        assert_eq!(pixels.len(), 300 * 300 * 3);
        assert!(
            (36_000..52_000).contains(&bytes.len()),
            "size {}",
            bytes.len()
        );
    }

    #[test]
    fn the_same_seed_draws_the_same_picture() {
        assert_eq!(jpeg(3, GRAIN), jpeg(3, GRAIN));
        assert_ne!(jpeg(3, GRAIN), jpeg(4, GRAIN));
    }
}
