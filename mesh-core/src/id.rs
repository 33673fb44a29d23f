//! Validated identifiers: [`PeerId`] and [`RoomId`].
//!
//! Both arrive off the wire, so both are checked on construction and on deserialization: 1 to 64
//! characters from `[A-Za-z0-9._:-]`. Anything else is a [`IdError`], never a panic.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest accepted identifier, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string was empty.
    #[error("{kind} is empty")]
    Empty {
        /// Which identifier kind was being parsed.
        kind: &'static str,
    },
    /// The string was longer than [`MAX_ID_LEN`].
    #[error("{kind} is {len} bytes long, the limit is {MAX_ID_LEN}")]
    TooLong {
        /// Which identifier kind was being parsed.
        kind: &'static str,
        /// The length that was given.
        len: usize,
    },
    /// The string held a character outside `[A-Za-z0-9._:-]`.
    #[error("{kind} contains {ch:?}; allowed are letters, digits and . _ : -")]
    BadChar {
        /// Which identifier kind was being parsed.
        kind: &'static str,
        /// The first offending character.
        ch: char,
    },
}

fn validate(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { kind, len: s.len() });
    }
    match s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))) {
        Some(ch) => Err(IdError::BadChar { kind, ch }),
        None => Ok(()),
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `s` and wraps it.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                validate($kind, &s)?;
                Ok(Self(s))
            }
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

id_type!(
    /// The identity of one peer (worker or client) within a room.
    PeerId,
    "peer id"
);
id_type!(
    /// The name of a room: the set of workers that form one mesh.
    RoomId,
    "room id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        assert_eq!(PeerId::new("gpu-node-7").unwrap().as_str(), "gpu-node-7");
        assert!(RoomId::new("lab_1.a:b").is_ok());
    }

    #[test]
    fn rejects_empty_long_and_odd_characters() {
        assert!(matches!(PeerId::new(""), Err(IdError::Empty { .. })));
        assert!(matches!(PeerId::new("x".repeat(65)), Err(IdError::TooLong { len: 65, .. })));
        assert!(matches!(PeerId::new("a b"), Err(IdError::BadChar { ch: ' ', .. })));
        assert!(matches!(RoomId::new("é"), Err(IdError::BadChar { .. })));
    }

    #[test]
    fn deserialization_validates() {
        let ok: PeerId = serde_json::from_str("\"w1\"").unwrap();
        assert_eq!(ok.as_str(), "w1");
        let err = serde_json::from_str::<PeerId>("\"bad id\"").unwrap_err();
        assert!(err.to_string().contains("peer id"), "{err}");
    }
}
