//! Shell-style globs over names: `*` (any run, `/` included) and `?` (one
//! character); every other character matches itself. No escapes, no classes.

/// Whether `name` matches `pattern`, in O(len(pattern) * len(name)) at worst
/// (the classic backtrack to the last `*`, no recursion).
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: alloc::vec::Vec<char> = pattern.chars().collect();
    let n: alloc::vec::Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || Some(&c) == n.get(ni) => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

/// Whether any of `patterns` matches `name`.
pub fn any(patterns: &[alloc::string::String], name: &str) -> bool {
    patterns.iter().any(|p| matches(p, name))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs() {
        for (p, n, want) in [
            ("*", "", true),
            ("*", "anything/at/all", true),
            ("echo", "echo", true),
            ("echo", "echo2", false),
            ("ec?o", "echo", true),
            ("ec?o", "eco", false),
            ("weather__*", "weather__forecast", true),
            ("weather__*", "news__weather__x", false),
            ("*__delete*", "db__delete_all", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("", "", true),
            ("", "x", false),
            ("é?", "éü", true),
        ] {
            assert_eq!(matches(p, n), want, "{p:?} ~ {n:?}");
        }
        // Pathological patterns stay polynomial.
        assert!(!matches(&"*a".repeat(50), &"a".repeat(49)));
    }
}
