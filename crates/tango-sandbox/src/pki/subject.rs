//! Certificate subjects as an operator types them: a bare common name (`svc`), or a full
//! distinguished name written as RFC 4514 does (`CN=svc,O=Acme,C=US`, most specific first).
//!
//! Invariant: a parsed [`Subject`] has a CN, no attribute twice, no empty value, and every value
//! within its X.520 upper bound (C: two letters), so the certificate carries exactly what was
//! typed; anything else is refused with the reason, never guessed at.

use std::fmt;
use std::str::FromStr;

use rcgen::string::PrintableString;
use rcgen::{DistinguishedName, DnType, DnValue};

/// The attribute types a subject may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectAttr {
    CommonName,
    Organization,
    OrganizationalUnit,
    Country,
    Locality,
    State,
}

const SUPPORTED: &str = "CN, O, OU, C, L, ST";

impl SubjectAttr {
    fn from_key(key: &str) -> Option<Self> {
        let attr = match key.to_ascii_uppercase().as_str() {
            "CN" => SubjectAttr::CommonName,
            "O" => SubjectAttr::Organization,
            "OU" => SubjectAttr::OrganizationalUnit,
            "C" => SubjectAttr::Country,
            "L" => SubjectAttr::Locality,
            "ST" => SubjectAttr::State,
            _ => return None,
        };
        Some(attr)
    }

    /// The RFC 4514 short name.
    pub fn key(self) -> &'static str {
        match self {
            SubjectAttr::CommonName => "CN",
            SubjectAttr::Organization => "O",
            SubjectAttr::OrganizationalUnit => "OU",
            SubjectAttr::Country => "C",
            SubjectAttr::Locality => "L",
            SubjectAttr::State => "ST",
        }
    }

    /// Upper bounds from RFC 5280 appendix A (ub-common-name and friends), in characters.
    fn max_len(self) -> usize {
        match self {
            SubjectAttr::Country => 2,
            SubjectAttr::Locality | SubjectAttr::State => 128,
            _ => 64,
        }
    }

    fn dn_type(self) -> DnType {
        match self {
            SubjectAttr::CommonName => DnType::CommonName,
            SubjectAttr::Organization => DnType::OrganizationName,
            SubjectAttr::OrganizationalUnit => DnType::OrganizationalUnitName,
            SubjectAttr::Country => DnType::CountryName,
            SubjectAttr::Locality => DnType::LocalityName,
            SubjectAttr::State => DnType::StateOrProvinceName,
        }
    }
}

/// Why a `--subject` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("the subject is empty")]
    Empty,
    #[error("an attribute is missing between two `,` or at either end")]
    EmptyPart,
    #[error("`{part}` is not KEY=VALUE (separate attributes with `,`)")]
    NotKeyValue { part: String },
    #[error("unknown attribute `{key}` (supported: {SUPPORTED})")]
    UnknownAttr { key: String },
    #[error("{key} has an empty value")]
    EmptyValue { key: &'static str },
    #[error("{key} is given twice (each attribute may appear once)")]
    Duplicate { key: &'static str },
    #[error("{key} is {len} characters long, more than the {max} allowed")]
    TooLong {
        key: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{key} contains a control character")]
    Control { key: &'static str },
    #[error("C must be a two-letter country code such as US, not `{value}`")]
    Country { value: String },
    #[error("a full DN needs a CN (e.g. CN=svc,O=Acme,C=US)")]
    NoCommonName,
    #[error("multi-valued RDNs (`+`) are not supported; write `\\+` for a literal plus")]
    MultiValued,
    #[error("the subject ends with a lone `\\` that escapes nothing")]
    DanglingEscape,
}

/// A certificate subject, attributes in the order written (RFC 4514: most specific first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    attrs: Vec<(SubjectAttr, String)>,
}

impl Subject {
    /// A common name, or a full DN when `text` contains `=`.
    pub fn parse(text: &str) -> Result<Subject, SubjectError> {
        let attrs = if text.contains('=') {
            parse_dn(text)?
        } else if text.trim().is_empty() {
            return Err(SubjectError::Empty);
        } else {
            vec![(SubjectAttr::CommonName, text.trim().to_string())]
        };
        let mut seen = Vec::with_capacity(attrs.len());
        for (attr, value) in &attrs {
            check_value(*attr, value)?;
            if seen.contains(attr) {
                return Err(SubjectError::Duplicate { key: attr.key() });
            }
            seen.push(*attr);
        }
        if !seen.contains(&SubjectAttr::CommonName) {
            return Err(SubjectError::NoCommonName);
        }
        Ok(Subject { attrs })
    }

    pub fn attrs(&self) -> &[(SubjectAttr, String)] {
        &self.attrs
    }

    pub fn common_name(&self) -> Option<&str> {
        self.get(SubjectAttr::CommonName)
    }

    pub fn get(&self, attr: SubjectAttr) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(a, _)| *a == attr)
            .map(|(_, v)| v.as_str())
    }

    /// The rcgen name. RFC 4514 writes the last RDN of the encoding first, so the attributes
    /// go in reversed (`CN=svc,O=Acme,C=US` is encoded C, O, CN, as openssl shows it).
    pub fn to_distinguished_name(&self) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        for (attr, value) in self.attrs.iter().rev() {
            dn.push(attr.dn_type(), dn_value(*attr, value));
        }
        dn
    }
}

impl FromStr for Subject {
    type Err = SubjectError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Subject::parse(text)
    }
}

/// RFC 4514 form, with `,` `+` `"` `\` `<` `>` `;` `=` escaped.
impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (attr, value)) in self.attrs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}=", attr.key())?;
            for c in value.chars() {
                if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// RFC 5280 wants countryName as a PrintableString; everything else goes as UTF8String.
fn dn_value(attr: SubjectAttr, value: &str) -> DnValue {
    match (attr, PrintableString::try_from(value)) {
        (SubjectAttr::Country, Ok(printable)) => DnValue::PrintableString(printable),
        _ => DnValue::Utf8String(value.to_string()),
    }
}

fn check_value(attr: SubjectAttr, value: &str) -> Result<(), SubjectError> {
    let key = attr.key();
    if value.is_empty() {
        return Err(SubjectError::EmptyValue { key });
    }
    if value.chars().any(char::is_control) {
        return Err(SubjectError::Control { key });
    }
    if attr == SubjectAttr::Country
        && !(value.len() == 2 && value.chars().all(|c| c.is_ascii_alphabetic()))
    {
        return Err(SubjectError::Country {
            value: value.to_string(),
        });
    }
    let len = value.chars().count();
    let max = attr.max_len();
    if len > max {
        return Err(SubjectError::TooLong { key, len, max });
    }
    Ok(())
}

/// One character of the input and whether a `\` escaped it.
type Token = (char, bool);

fn parse_dn(text: &str) -> Result<Vec<(SubjectAttr, String)>, SubjectError> {
    let mut parts: Vec<Vec<Token>> = vec![Vec::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        let token = match c {
            '\\' => (chars.next().ok_or(SubjectError::DanglingEscape)?, true),
            '+' => return Err(SubjectError::MultiValued),
            ',' => {
                parts.push(Vec::new());
                continue;
            }
            c => (c, false),
        };
        if let Some(part) = parts.last_mut() {
            part.push(token);
        }
    }
    parts.iter().map(|part| parse_attr(part)).collect()
}

fn parse_attr(part: &[Token]) -> Result<(SubjectAttr, String), SubjectError> {
    if part
        .iter()
        .all(|&(c, escaped)| c.is_whitespace() && !escaped)
    {
        return Err(SubjectError::EmptyPart);
    }
    let shown = || part.iter().map(|(c, _)| *c).collect::<String>();
    let eq = part
        .iter()
        .position(|&(c, escaped)| c == '=' && !escaped)
        .ok_or_else(|| SubjectError::NotKeyValue { part: shown() })?;
    let (key_tokens, value_tokens) = (&part[..eq], &part[eq + 1..]);
    if key_tokens.iter().any(|&(_, escaped)| escaped) {
        return Err(SubjectError::NotKeyValue { part: shown() });
    }
    let key: String = key_tokens.iter().map(|(c, _)| *c).collect();
    let key = key.trim();
    if key.is_empty() {
        return Err(SubjectError::NotKeyValue { part: shown() });
    }
    let attr = SubjectAttr::from_key(key).ok_or_else(|| SubjectError::UnknownAttr {
        key: key.to_string(),
    })?;
    Ok((attr, trim_unescaped(value_tokens)))
}

/// The value without the unescaped spaces around it (`\ ` keeps a meaningful space).
fn trim_unescaped(tokens: &[Token]) -> String {
    let blank = |&(c, escaped): &Token| c.is_whitespace() && !escaped;
    let start = tokens
        .iter()
        .position(|t| !blank(t))
        .unwrap_or(tokens.len());
    let end = tokens
        .iter()
        .rposition(|t| !blank(t))
        .map_or(start, |i| i + 1);
    tokens[start..end].iter().map(|(c, _)| *c).collect()
}

#[cfg(test)]
#[path = "subject_tests.rs"]
mod tests;
