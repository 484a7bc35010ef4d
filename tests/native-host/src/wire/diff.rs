//! A small line diff for transcripts (LCS on the part between the common prefix and suffix).

/// Unified-style hunks with `context` lines around changes; empty when equal.
pub fn diff(a: &[String], b: &[String], context: usize) -> Vec<String> {
    if a == b {
        return Vec::new();
    }
    let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suf = a[pre..]
        .iter()
        .rev()
        .zip(b[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    let mut ops = Vec::new(); // (' ' | '-' | '+', line)
    if am.len() * bm.len() > 4_000_000 {
        // Too large to align: show both sides of the differing region.
        ops.extend(am.iter().map(|l| ('-', l)));
        ops.extend(bm.iter().map(|l| ('+', l)));
    } else {
        let (n, m) = (am.len(), bm.len());
        let mut lcs = vec![vec![0u32; m + 1]; n + 1];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i][j] = if am[i] == bm[j] {
                    lcs[i + 1][j + 1] + 1
                } else {
                    lcs[i + 1][j].max(lcs[i][j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && am[i] == bm[j] {
                ops.push((' ', &am[i]));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
                ops.push(('-', &am[i]));
                i += 1;
            } else {
                ops.push(('+', &bm[j]));
                j += 1;
            }
        }
    }
    let mut out = vec![format!("@@ from transcript line {} @@", pre + 1)];
    for line in a[pre.saturating_sub(context)..pre].iter() {
        out.push(format!("  {line}"));
    }
    for (op, line) in ops {
        out.push(format!("{op} {line}"));
    }
    for line in a[a.len() - suf..].iter().take(context) {
        out.push(format!("  {line}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn shows_changes_with_context() {
        let d = diff(&lines("a b c d e"), &lines("a b x d e"), 1);
        assert_eq!(d[1..], ["  b", "- c", "+ x", "  d"]);
        assert!(diff(&lines("a"), &lines("a"), 2).is_empty());
    }
}
