//! Secrets Kiln hands a user once, API keys and service tokens alike: a kind's prefix followed by
//! 32 random base-62 characters (190 bits), stored only as a SHA-256 hash beside a visible
//! prefix, and named by the user.

use sha2::{Digest, Sha256};

/// How many random characters follow the kind's prefix.
pub const RANDOM_LEN: usize = 32;
/// How many random characters the stored, visible prefix keeps (`kiln_live_ab12cd34`).
const VISIBLE_LEN: usize = 8;
/// The longest name a key or token may have, in characters.
pub const MAX_NAME_LEN: usize = 100;

/// getrandom's error, as an error with a `source()` chain: getrandom implements
/// `std::error::Error` only with its `std` feature, which this crate's build may not have.
#[derive(Debug)]
pub struct RandomError(pub getrandom::Error);

impl std::fmt::Display for RandomError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for RandomError {}

/// A fresh secret: `prefix` and [`RANDOM_LEN`] characters from the operating system's CSPRNG.
pub fn generate(prefix: &str) -> Result<String, RandomError> {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut secret = String::from(prefix);
    let mut byte = [0u8; 1];
    while secret.len() < prefix.len() + RANDOM_LEN {
        getrandom::fill(&mut byte).map_err(RandomError)?;
        // Rejection sampling: 248 = 4 × 62, so accepted bytes map onto the alphabet uniformly.
        if byte[0] < 248 {
            secret.push(ALPHABET[(byte[0] % 62) as usize] as char);
        }
    }
    Ok(secret)
}

/// The part of a secret made with `prefix` that is stored and shown, to tell secrets apart.
pub fn visible_part<'a>(secret: &'a str, prefix: &str) -> &'a str {
    &secret[..prefix.len() + VISIBLE_LEN]
}

/// Whether `value` has the shape of a secret made with `prefix` (so that anything else can be
/// refused without a look-up).
pub fn has_shape(value: &str, prefix: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == RANDOM_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// The SHA-256 of a presented secret, as stored.
pub fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A key's or token's name, trimmed, if it is acceptable: 1 to [`MAX_NAME_LEN`] characters, none
/// of them a control character.
pub fn valid_name(name: &str) -> Option<&str> {
    let name = name.trim();
    let fits = !name.is_empty() && name.chars().count() <= MAX_NAME_LEN;
    (fits && !name.chars().any(char::is_control)).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_checked() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        let cases = [
            ("  deploys ", Some("deploys")),
            ("", None),
            ("   ", None),
            ("tab\there", None),
            (long.as_str(), None),
            (&long[1..], Some(&long[1..])),
        ];
        for (name, expected) in cases {
            assert_eq!(valid_name(name), expected, "{name:?}");
        }
    }
}
