//! How many SMS segments a text takes: GSM-7 when every character is in the
//! GSM 03.38 alphabet (the extension table's characters count twice),
//! otherwise UCS-2. One segment holds 160 GSM-7 characters or 70 UCS-2 code
//! units; a concatenated message 153 or 67 per segment (the rest is the
//! concatenation header).

use serde::{Deserialize, Serialize};

/// The encoding an SMS text needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Gsm7,
    Ucs2,
    /// An e-mail: UTF-8, one "segment" whatever its length.
    Utf8,
}

/// A text's encoding, length in that encoding's units, and segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Segments {
    pub encoding: Encoding,
    /// GSM-7 septets or UCS-2 (UTF-16) code units.
    pub units: usize,
    pub segments: usize,
}

const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM_EXTENSION: &str = "^{}\\[~]|€\u{c}";

fn gsm_units(c: char) -> Option<usize> {
    if GSM_BASIC.contains(c) {
        Some(1)
    } else if GSM_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// What `text` takes on `channel`: SMS segments, or for an e-mail one.
pub fn for_channel(channel: &str, text: &str) -> Segments {
    if channel == "email" {
        Segments {
            encoding: Encoding::Utf8,
            units: text.chars().count(),
            segments: 1,
        }
    } else {
        count(text)
    }
}

/// Count the segments of `text`.
pub fn count(text: &str) -> Segments {
    let gsm: Option<usize> = text.chars().map(gsm_units).sum();
    let (encoding, units, single, multi) = match gsm {
        Some(n) => (Encoding::Gsm7, n, 160, 153),
        None => (Encoding::Ucs2, text.encode_utf16().count(), 70, 67),
    };
    // An empty text still takes one segment.
    let segments = if units <= single {
        1
    } else {
        units.div_ceil(multi)
    };
    Segments {
        encoding,
        units,
        segments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm7_boundaries() {
        assert_eq!(count(&"a".repeat(160)).segments, 1);
        assert_eq!(count(&"a".repeat(161)).segments, 2);
        assert_eq!(count(&"a".repeat(306)).segments, 2);
        assert_eq!(count(&"a".repeat(307)).segments, 3);
        // Extension characters take two septets.
        let euro = count(&"€".repeat(80));
        assert_eq!(
            (euro.encoding, euro.units, euro.segments),
            (Encoding::Gsm7, 160, 1)
        );
        assert_eq!(
            count("Congratulation, here is your coupon code: 8830644924.").encoding,
            Encoding::Gsm7
        );
    }

    #[test]
    fn ucs2_boundaries() {
        let cyr = count(&"ж".repeat(70));
        assert_eq!((cyr.encoding, cyr.segments), (Encoding::Ucs2, 1));
        assert_eq!(count(&"ж".repeat(71)).segments, 2);
        assert_eq!(count(&"ж".repeat(134)).segments, 2);
        assert_eq!(count(&"ж".repeat(135)).segments, 3);
        // An emoji is two UTF-16 code units.
        assert_eq!(count("🎁").units, 2);
        assert_eq!(count("Mulțumim").encoding, Encoding::Ucs2);
    }
}
