//! Redaction for logs: PSP tokens and ids in URL paths shortened to what correlates them
//! without making them reusable. Free of any engine type, so every module can log safely.

/// The first and last four characters: enough to correlate, too little to reuse.
pub fn token(token: &str) -> String {
    let chars: Vec<char> = token.chars().collect();
    if chars.len() <= 10 {
        return "***".into();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// A URL path with every segment that looks like an id shortened to its first and last
/// four characters.
pub fn path(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if looks_like_id(seg) {
                token(seg)
            } else {
                seg.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// API path words are lower-case (`payment_methods`); ids are random: a digit or an
/// upper-case letter in a long segment, or a short prefix and a long alphanumeric tail
/// (`pm_…`, `cus_…`), which also catches an id that happens to be all lower-case.
fn looks_like_id(seg: &str) -> bool {
    let random = seg.len() > 10
        && seg
            .chars()
            .any(|c| c.is_ascii_digit() || c.is_ascii_uppercase());
    let prefixed = seg.split_once('_').is_some_and(|(prefix, tail)| {
        (1..=8).contains(&prefix.len())
            && prefix.chars().all(|c| c.is_ascii_lowercase())
            && tail.len() >= 10
            && tail.chars().all(|c| c.is_ascii_alphanumeric())
    });
    random || prefixed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_little() {
        assert_eq!(token("short"), "***");
        assert_eq!(token("sbx_pend_0123456789abcdef"), "sbx_…cdef");
    }

    #[test]
    fn ids_in_paths_are_shortened() {
        assert_eq!(
            path("/v1/payment_methods/pm_1Q2w3E4r5T6y7U8i/attach"),
            "/v1/payment_methods/pm_1…7U8i/attach"
        );
        assert_eq!(path("/v71/payments"), "/v71/payments");
        assert_eq!(path("/v1/customers"), "/v1/customers");
        // Ids without a digit (random ids sometimes have none) are shortened too.
        assert_eq!(
            path("/v1/payment_methods/pm_abcdefghijklmn/attach"),
            "/v1/payment_methods/pm_a…klmn/attach"
        );
        assert_eq!(
            path("/v1/customers/cus_QwErTyUiOpAsDf"),
            "/v1/customers/cus_…AsDf"
        );
        for word in [
            "payment_methods",
            "payment_intents",
            "checkout_sessions",
            "_authenticate",
        ] {
            assert_eq!(path(&format!("/v1/{word}")), format!("/v1/{word}"));
        }
    }
}
