//! A line diff of two JSON documents, for `plugin test` and `replay`.

use serde_json::Value;

/// The longest documents diffed line by line; longer ones are shown whole.
const MAX_LINES: usize = 2000;

/// `expected` against `actual`, pretty-printed, as `-`/`+`/` ` lines;
/// None when they are equal.
pub fn json_diff(expected: &Value, actual: &Value) -> Option<String> {
    if expected == actual {
        return None;
    }
    let a = serde_json::to_string_pretty(expected).unwrap_or_default();
    let b = serde_json::to_string_pretty(actual).unwrap_or_default();
    Some(lines(&a, &b))
}

fn lines(a: &str, b: &str) -> String {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    if a.len() > MAX_LINES || b.len() > MAX_LINES {
        let mut out = String::new();
        a.iter().for_each(|l| out.push_str(&format!("-{l}\n")));
        b.iter().for_each(|l| out.push_str(&format!("+{l}\n")));
        return out;
    }
    // Longest common subsequence, then walk it.
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut walked) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            walked.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // What went, before what came in its place.
            walked.push(('-', a[i]));
            i += 1;
        } else {
            walked.push(('+', b[j]));
            j += 1;
        }
    }
    // Unchanged lines more than CONTEXT away from a change are elided.
    let changed: Vec<usize> = (0..walked.len()).filter(|&k| walked[k].0 != ' ').collect();
    let near = |k: usize| {
        changed
            .binary_search_by(|&c| {
                if c + CONTEXT < k {
                    std::cmp::Ordering::Less
                } else if c > k + CONTEXT {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    };
    let mut out = String::new();
    let mut elided = false;
    for (k, (mark, line)) in walked.iter().enumerate() {
        if near(k) {
            out.push_str(&format!("{mark}{line}\n"));
            elided = false;
        } else if !elided {
            out.push_str(" …\n");
            elided = true;
        }
    }
    out
}

/// Unchanged lines shown around a change.
const CONTEXT: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shows_what_changed_between_the_documents() {
        assert_eq!(json_diff(&json!({"a": 1}), &json!({"a": 1})), None);
        let d = json_diff(&json!({"a": 1, "b": 2}), &json!({"a": 1, "b": 3})).unwrap_or_default();
        assert!(
            d.contains("-  \"b\": 2") && d.contains("+  \"b\": 3") && d.contains("   \"a\": 1,"),
            "{d}"
        );
        assert!(
            d.find("-  \"b\"") < d.find("+  \"b\""),
            "what went first: {d}"
        );
        let long: Vec<i32> = (0..20).collect();
        let mut changed = long.clone();
        changed[10] = 99;
        let d = json_diff(&json!(long), &json!(changed)).unwrap_or_default();
        assert_eq!(
            d, " …\n   7,\n   8,\n   9,\n-  10,\n+  99,\n   11,\n   12,\n   13,\n …\n",
            "three lines of context around a change"
        );
    }
}
