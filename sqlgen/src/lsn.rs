//! Log sequence numbers in PostgreSQL's `%X/%X` spelling.

use std::fmt;
use std::str::FromStr;

/// A WAL position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN \"{0}\": expected two hexadecimal numbers separated by '/', like 16/B374D848")]
pub struct LsnParseError(pub String);

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || LsnParseError(s.to_owned());
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        let part = |p: &str| {
            if p.is_empty() || p.len() > 8 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                None
            } else {
                u32::from_str_radix(p, 16).ok()
            }
        };
        let (hi, lo) = (part(hi).ok_or_else(err)?, part(lo).ok_or_else(err)?);
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format_round_trip() {
        for s in ["0/0", "0/16B3748", "16/B374D848", "FFFFFFFF/FFFFFFFF"] {
            let lsn: Lsn = s.parse().unwrap();
            assert_eq!(lsn.to_string(), s);
        }
        assert_eq!("16/B374D848".parse::<Lsn>().unwrap().0, 0x16_B374_D848);
        assert_eq!("0/16b3748".parse::<Lsn>().unwrap().to_string(), "0/16B3748");
    }

    #[test]
    fn ordering_is_numeric() {
        let a: Lsn = "0/FFFFFFFF".parse().unwrap();
        let b: Lsn = "1/0".parse().unwrap();
        assert!(a < b);
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "0",
            "/1",
            "1/",
            "0/G",
            "1/2/3",
            "123456789/0",
            " 0/1",
            "-1/0",
        ] {
            assert!(s.parse::<Lsn>().is_err(), "{s:?}");
        }
    }
}
