//! What a message's text may contain. A body comes from a client, a
//! template plugin or a route plugin; before it is stored or sent, every
//! character that an SMS or Viber text cannot carry, or that only serves to
//! deceive a reader or a terminal, is removed: C0 controls but tab and
//! newline (a CR LF pair becomes a newline), DEL, C1 controls (which include
//! the 8-bit escape introducer), and the bidirectional embedding, override
//! and isolate controls (U+202A–U+202E, U+2066–U+2069), which can make a
//! link or a code read backwards. The directional marks (U+200E, U+200F)
//! stay: right-to-left text needs them.

/// `text` with the characters a message channel cannot carry removed.
pub fn for_channel(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    text.chars().filter(|c| allowed(*c)).collect()
}

fn allowed(c: char) -> bool {
    match c {
        '\t' | '\n' => true,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => false,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_go_and_text_stays() {
        assert_eq!(
            for_channel("Code:\u{0} 12\u{1b}[2J34\r\nbye\r"),
            "Code: 12[2J34\nbye"
        );
        assert_eq!(for_channel("evil\u{202e}gnp.exe"), "evilgnp.exe");
        assert_eq!(for_channel("\u{85}x\u{7f}\ty"), "x\ty");
        // Right-to-left text and its marks, emoji and accents are kept.
        let kept = "שלום \u{200f}123 ✓ ½ café 👍";
        assert_eq!(for_channel(kept), kept);
    }
}
