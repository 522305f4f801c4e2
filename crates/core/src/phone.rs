//! [`Phone`]: a mainland China mobile number, the login identity.

use std::fmt;

use crate::error::ApiError;

/// Eleven digits starting `13`..`19`, without the `+86` country code.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

impl Phone {
    /// Accepts an optional `+86` prefix, which is dropped.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let s = s.trim();
        let digits = s.strip_prefix("+86").unwrap_or(s);
        let b = digits.as_bytes();
        let valid = b.len() == 11
            && b[0] == b'1'
            && (b'3'..=b'9').contains(&b[1])
            && b.iter().all(u8::is_ascii_digit);
        if valid {
            Ok(Self(digits.to_string()))
        } else {
            Err(ApiError::InvalidPhone)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `138****5678`: what responses show.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

/// Masks the middle four digits of a stored phone number.
pub fn mask(phone: &str) -> String {
    if phone.len() == 11 && phone.is_ascii() {
        format!("{}****{}", &phone[..3], &phone[7..])
    } else {
        "****".to_string()
    }
}

// Phone numbers are personal data: logs get the masked form.
impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phone({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_mainland_mobiles_with_or_without_country_code() {
        assert_eq!(Phone::parse("13812345678").unwrap().as_str(), "13812345678");
        assert_eq!(
            Phone::parse("+8619912345678").unwrap().as_str(),
            "19912345678"
        );
        assert_eq!(
            Phone::parse(" 15012345678 ").unwrap().as_str(),
            "15012345678"
        );
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "1381234567",
            "138123456789",
            "12812345678",
            "23812345678",
            "1381234567a",
            "+8713812345678",
            "86 13812345678",
            "１３８１２３４５６７８",
        ] {
            assert_eq!(Phone::parse(bad), Err(ApiError::InvalidPhone), "{bad}");
        }
    }

    #[test]
    fn masks_the_middle() {
        let p = Phone::parse("13812345678").unwrap();
        assert_eq!(p.masked(), "138****5678");
        assert!(!format!("{p:?}").contains("1234"));
    }
}
