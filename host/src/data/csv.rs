//! The UCI optdigits set (1,797 images of 8x8, 10 classes), built into the binary
//! from `host/data/digits.csv.gz` (see `host/data/LICENSE-digits.txt`).
//!
//! One CSV row per image: 64 pixel counts 0..=16 in row-major order, then the
//! label. Counts are scaled to bytes as `round(v * 255 / 16)`, so 16 becomes 255.

use std::path::Path;

use super::{file, DataError, Loaded, Spec, Split};

/// The gzipped CSV, as vendored.
pub const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// How errors name the embedded file.
pub const DIGITS_PATH: &str = "host/data/digits.csv.gz (embedded)";

/// Side of the square digit images.
pub const DIGITS_SIDE: usize = 8;
/// Number of digit classes.
pub const DIGITS_CLASSES: usize = 10;
/// Largest pixel count in the CSV (a 4x4 block of a 32x32 bitmap).
pub const DIGITS_MAX_VALUE: u32 = 16;

/// `round(v * 255 / 16)` in integers (the halves, at v = 8, round up to 128).
pub fn scale_pixel(v: u32) -> u8 {
    ((v * 255 + DIGITS_MAX_VALUE / 2) / DIGITS_MAX_VALUE) as u8
}

/// The embedded digits set, all of it as one split (it has no official test split).
pub(super) fn load_digits() -> Result<Loaded, DataError> {
    let path = Path::new(DIGITS_PATH);
    let text = file::decode(DIGITS_CSV_GZ.to_vec(), path)?;
    let train = parse(&text, path)?;
    Ok(Loaded {
        spec: Spec {
            name: "digits".to_string(),
            channels: 1,
            height: DIGITS_SIDE,
            width: DIGITS_SIDE,
            classes: DIGITS_CLASSES,
        },
        train,
        test: None,
    })
}

/// Parses digits CSV text: each non-empty line 64 values in 0..=16 then a label
/// in 0..10. `path` names the file in errors; lines are numbered from 1.
pub fn parse(text: &[u8], path: &Path) -> Result<Split, DataError> {
    let pixels_per_image = DIGITS_SIDE * DIGITS_SIDE;
    let malformed = |line: usize, message: String| DataError::Malformed {
        path: path.to_path_buf(),
        message: format!("line {line}: {message}"),
    };
    let text = std::str::from_utf8(text).map_err(|e| DataError::Malformed {
        path: path.to_path_buf(),
        message: format!("not UTF-8 text: {e}"),
    })?;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != pixels_per_image + 1 {
            return Err(malformed(
                line_no,
                format!(
                    "{} fields, expected {} ({} pixels then the label)",
                    fields.len(),
                    pixels_per_image + 1,
                    pixels_per_image
                ),
            ));
        }
        let number = |col: usize| {
            parse_count(fields[col]).ok_or_else(|| {
                malformed(
                    line_no,
                    format!("field {} is `{}`, not a whole number", col + 1, fields[col]),
                )
            })
        };
        for col in 0..pixels_per_image {
            let v = number(col)?;
            if v > DIGITS_MAX_VALUE {
                return Err(malformed(
                    line_no,
                    format!(
                        "pixel {} is {v}, above the maximum {DIGITS_MAX_VALUE}",
                        col + 1
                    ),
                ));
            }
            images.push(scale_pixel(v));
        }
        let label = number(pixels_per_image)?;
        if label as usize >= DIGITS_CLASSES {
            return Err(DataError::LabelOutOfRange {
                path: path.to_path_buf(),
                value: label.min(255) as u8,
                index: labels.len(),
                classes: DIGITS_CLASSES,
            });
        }
        labels.push(label as u8);
    }
    Ok(Split {
        images,
        labels,
        channels: 1,
        height: DIGITS_SIDE,
        width: DIGITS_SIDE,
        classes: DIGITS_CLASSES,
    })
}

/// A non-negative whole number, written as `7` or `7.0` (some exports of the
/// set write floats).
fn parse_count(field: &str) -> Option<u32> {
    let digits = field.strip_suffix(".0").unwrap_or(field);
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_is_round_v_times_255_over_16() {
        for v in 0..=16u32 {
            let want = (v as f64 * 255.0 / 16.0).round() as u8;
            assert_eq!(scale_pixel(v), want, "v = {v}");
        }
        assert_eq!(
            (scale_pixel(0), scale_pixel(8), scale_pixel(16)),
            (0, 128, 255)
        );
    }

    #[test]
    fn embedded_digits_are_1797_images_of_8x8_in_10_classes() {
        let loaded = load_digits().unwrap();
        let s = &loaded.train;
        assert_eq!(s.len(), 1797);
        assert_eq!(s.images.len(), 1797 * 64);
        assert_eq!(
            (loaded.spec.channels, loaded.spec.height, loaded.spec.width),
            (1, 8, 8)
        );
        assert_eq!(loaded.spec.classes, 10);
        // Counts per class, as `zcat digits.csv.gz | cut -d, -f65 | sort | uniq -c` gives.
        assert_eq!(
            s.class_counts(),
            vec![178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
        );
        // First row: 0,0,5,13,9,1,0,0,... label 0.
        assert_eq!(s.labels[0], 0);
        assert_eq!(s.image(0)[..4], [0, 0, scale_pixel(5), scale_pixel(13)]);
        assert_eq!(*s.images.iter().max().unwrap(), 255);
        assert!(loaded.test.is_none());
    }

    #[test]
    fn parse_errors_name_the_line_and_value() {
        let p = Path::new("digits.csv");
        let row = |label: &str, first: &str| {
            let mut f = vec![first.to_string()];
            f.extend(std::iter::repeat_n("0".to_string(), 63));
            f.push(label.to_string());
            f.join(",")
        };
        let ok = format!("{}\n{}\n", row("3", "16"), row("9", "2.0"));
        let s = parse(ok.as_bytes(), p).unwrap();
        assert_eq!(
            (s.len(), s.labels.clone(), s.image(0)[0], s.image(1)[0]),
            (2, vec![3, 9], 255, 32)
        );

        let text = format!("{}\n{}\n", row("3", "0"), row("10", "0"));
        let err = parse(text.as_bytes(), p).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::LabelOutOfRange {
                    value: 10,
                    index: 1,
                    classes: 10,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("digits.csv"), "{err}");

        let msg = parse(format!("{}\n", row("1", "17")).as_bytes(), p)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("line 1") && msg.contains("17") && msg.contains("digits.csv"),
            "{msg}"
        );
        let msg = parse(format!("\n{}\n", row("1", "x")).as_bytes(), p)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("line 2") && msg.contains("`x`"), "{msg}");
        let msg = parse(b"1,2,3\n", p).unwrap_err().to_string();
        assert!(msg.contains("3 fields, expected 65"), "{msg}");
    }
}
