//! Privacy levels, conditions over them (`">= confidential"`) and small sets of levels.
//!
//! The levels are totally ordered; everything at `confidential` or above must stay
//! inside the trust boundary (product invariant 3), so the ordering is load-bearing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How sensitive a request is. Ordered from least to most sensitive.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PrivacyLevel {
    /// May be sent anywhere.
    Public,
    /// Company-internal; the default when nothing else is known.
    #[default]
    Internal,
    /// Must stay inside the trust boundary.
    Confidential,
    /// Must stay inside the trust boundary; the strictest level.
    Restricted,
}

impl PrivacyLevel {
    /// Every level, least sensitive first.
    pub const ALL: [PrivacyLevel; 4] = [
        PrivacyLevel::Public,
        PrivacyLevel::Internal,
        PrivacyLevel::Confidential,
        PrivacyLevel::Restricted,
    ];

    /// The lowercase name used in YAML, headers and the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            PrivacyLevel::Public => "public",
            PrivacyLevel::Internal => "internal",
            PrivacyLevel::Confidential => "confidential",
            PrivacyLevel::Restricted => "restricted",
        }
    }

    /// Whether a request at this level must stay inside the trust boundary.
    pub fn requires_trusted(self) -> bool {
        self >= PrivacyLevel::Confidential
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for PrivacyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the four level names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown privacy level \"{0}\" (expected public, internal, confidential or restricted)")]
pub struct UnknownLevel(pub String);

impl FromStr for PrivacyLevel {
    type Err = UnknownLevel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "public" => Ok(PrivacyLevel::Public),
            "internal" => Ok(PrivacyLevel::Internal),
            "confidential" => Ok(PrivacyLevel::Confidential),
            "restricted" => Ok(PrivacyLevel::Restricted),
            _ => Err(UnknownLevel(s.trim().to_string())),
        }
    }
}

/// A set of privacy levels, used to reason about which levels can reach a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LevelSet(u8);

impl LevelSet {
    /// No level.
    pub const EMPTY: LevelSet = LevelSet(0);
    /// All four levels.
    pub const ALL: LevelSet = LevelSet(0b1111);

    /// Whether `level` is in the set.
    pub fn contains(self, level: PrivacyLevel) -> bool {
        self.0 & level.bit() != 0
    }

    /// The set with `level` added.
    pub fn with(self, level: PrivacyLevel) -> LevelSet {
        LevelSet(self.0 | level.bit())
    }

    /// Levels in both sets.
    pub fn intersect(self, other: LevelSet) -> LevelSet {
        LevelSet(self.0 & other.0)
    }

    /// Levels in `self` but not in `other`.
    pub fn minus(self, other: LevelSet) -> LevelSet {
        LevelSet(self.0 & !other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The levels in the set, least sensitive first.
    pub fn iter(self) -> impl Iterator<Item = PrivacyLevel> {
        PrivacyLevel::ALL
            .into_iter()
            .filter(move |l| self.contains(*l))
    }

    /// Whether any level in the set must stay inside the trust boundary.
    pub fn any_requires_trusted(self) -> bool {
        self.iter().any(PrivacyLevel::requires_trusted)
    }
}

impl fmt::Display for LevelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(PrivacyLevel::as_str).collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(", "))
        }
    }
}

/// A comparison operator in a level condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`, `=` or no operator at all.
    Eq,
    /// `!=`
    Ne,
    /// `>=`
    Ge,
    /// `>`
    Gt,
}

impl CmpOp {
    /// The operator as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Ge => ">=",
            CmpOp::Gt => ">",
        }
    }

    /// Splits a leading operator off `s`; no operator means equality.
    pub(crate) fn split(s: &str) -> (CmpOp, &str) {
        let s = s.trim();
        for (tok, op) in [
            ("<=", CmpOp::Le),
            (">=", CmpOp::Ge),
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            ("<", CmpOp::Lt),
            (">", CmpOp::Gt),
            ("=", CmpOp::Eq),
        ] {
            if let Some(rest) = s.strip_prefix(tok) {
                return (op, rest.trim());
            }
        }
        (CmpOp::Eq, s)
    }

    /// Applies the operator to two ordered values.
    pub fn holds<T: PartialOrd>(self, left: T, right: T) -> bool {
        match self {
            CmpOp::Lt => left < right,
            CmpOp::Le => left <= right,
            CmpOp::Eq => left == right,
            CmpOp::Ne => left != right,
            CmpOp::Ge => left >= right,
            CmpOp::Gt => left > right,
        }
    }
}

/// A condition on the privacy level, e.g. `">= confidential"` or `"public"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelCondition {
    /// The comparison.
    pub op: CmpOp,
    /// The level compared against.
    pub level: PrivacyLevel,
}

impl LevelCondition {
    /// Whether a request at `level` satisfies the condition.
    pub fn matches(&self, level: PrivacyLevel) -> bool {
        self.op.holds(level, self.level)
    }

    /// Every level that satisfies the condition.
    pub fn levels(&self) -> LevelSet {
        PrivacyLevel::ALL
            .into_iter()
            .filter(|l| self.matches(*l))
            .fold(LevelSet::EMPTY, LevelSet::with)
    }
}

impl fmt::Display for LevelCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.as_str(), self.level)
    }
}

impl FromStr for LevelCondition {
    type Err = UnknownLevel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (op, rest) = CmpOp::split(s);
        Ok(LevelCondition {
            op,
            level: rest.parse()?,
        })
    }
}

/// A condition on a number, e.g. `"> 0.7"` for difficulty or `">= 2000"` for tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumCondition {
    /// The comparison.
    pub op: CmpOp,
    /// The number compared against.
    pub value: f64,
}

impl NumCondition {
    /// Whether `x` satisfies the condition.
    pub fn matches(&self, x: f64) -> bool {
        self.op.holds(x, self.value)
    }
}

impl fmt::Display for NumCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.as_str(), self.value)
    }
}

/// A numeric condition that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid condition \"{0}\" (expected an operator and a number, like \"> 0.7\")")]
pub struct BadNumCondition(pub String);

impl FromStr for NumCondition {
    type Err = BadNumCondition;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (op, rest) = CmpOp::split(s);
        match rest.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(NumCondition { op, value: v }),
            _ => Err(BadNumCondition(s.trim().to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_and_round_trip() {
        assert!(PrivacyLevel::Public < PrivacyLevel::Internal);
        assert!(PrivacyLevel::Confidential < PrivacyLevel::Restricted);
        for l in PrivacyLevel::ALL {
            assert_eq!(l.as_str().parse::<PrivacyLevel>(), Ok(l));
        }
        assert_eq!(
            "SECRET".parse::<PrivacyLevel>(),
            Err(UnknownLevel("SECRET".into()))
        );
    }

    #[test]
    fn conditions_parse_and_match() {
        let c: LevelCondition = ">= confidential".parse().unwrap();
        assert_eq!(c.to_string(), ">= confidential");
        assert!(!c.matches(PrivacyLevel::Internal));
        assert!(c.matches(PrivacyLevel::Restricted));
        let c: LevelCondition = "<confidential".parse().unwrap();
        assert_eq!(c.levels().to_string(), "public, internal");
        let c: LevelCondition = "public".parse().unwrap();
        assert_eq!(c.levels().to_string(), "public");
        let c: LevelCondition = "!= internal".parse().unwrap();
        assert_eq!(c.levels().to_string(), "public, confidential, restricted");
        assert!(">= secret".parse::<LevelCondition>().is_err());
        let n: NumCondition = "> 0.7".parse().unwrap();
        assert!(n.matches(0.71) && !n.matches(0.7));
        assert!("> lots".parse::<NumCondition>().is_err());
        assert!(LevelSet::ALL
            .minus(
                ">= confidential"
                    .parse::<LevelCondition>()
                    .unwrap()
                    .levels()
            )
            .iter()
            .all(|l| !l.requires_trusted()));
    }
}
