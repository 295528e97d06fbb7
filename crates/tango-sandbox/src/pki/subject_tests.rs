#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rcgen::DnType;

use super::*;

fn attrs(text: &str) -> Vec<(&'static str, String)> {
    Subject::parse(text)
        .unwrap()
        .attrs()
        .iter()
        .map(|(a, v)| (a.key(), v.clone()))
        .collect()
}

fn refused(text: &str) -> SubjectError {
    Subject::parse(text).unwrap_err()
}

#[test]
fn bare_text_is_a_common_name() {
    assert_eq!(attrs("svc"), [("CN", "svc".to_string())]);
    // Without `=` a comma is just part of the name.
    assert_eq!(attrs(" Acme, Inc "), [("CN", "Acme, Inc".to_string())]);
}

#[test]
fn full_dn_keeps_the_written_order_and_trims_spaces() {
    assert_eq!(
        attrs("CN=svc, O=Acme Corp ,OU=Payments,L=Portland,ST=Oregon,C=US"),
        [
            ("CN", "svc".to_string()),
            ("O", "Acme Corp".to_string()),
            ("OU", "Payments".to_string()),
            ("L", "Portland".to_string()),
            ("ST", "Oregon".to_string()),
            ("C", "US".to_string()),
        ]
    );
}

#[test]
fn keys_are_case_insensitive() {
    assert_eq!(
        attrs("cn=svc,o=Acme,st=WA"),
        [
            ("CN", "svc".to_string()),
            ("O", "Acme".to_string()),
            ("ST", "WA".to_string())
        ]
    );
}

#[test]
fn escapes_allow_commas_plus_and_edge_spaces_in_values() {
    let subject = Subject::parse(r"CN=svc\+1,O=Acme\, Inc.,OU=\ padded\ ").unwrap();
    assert_eq!(subject.common_name(), Some("svc+1"));
    assert_eq!(subject.get(SubjectAttr::Organization), Some("Acme, Inc."));
    assert_eq!(
        subject.get(SubjectAttr::OrganizationalUnit),
        Some(" padded ")
    );
    // The value after the first `=` may contain more `=`.
    assert_eq!(attrs("CN=a=b"), [("CN", "a=b".to_string())]);
}

#[test]
fn display_round_trips_through_parse() {
    for text in [
        "CN=svc,O=Acme,C=US",
        r"CN=svc\+1,O=Acme\, Inc.,OU=a\=b",
        "CN=plain",
    ] {
        let subject = Subject::parse(text).unwrap();
        assert_eq!(subject.to_string(), text);
        assert_eq!(Subject::parse(&subject.to_string()).unwrap(), subject);
    }
}

#[test]
fn distinguished_name_is_encoded_in_reverse_of_the_written_order() {
    let dn = Subject::parse("CN=svc,O=Acme,C=US")
        .unwrap()
        .to_distinguished_name();
    let types: Vec<DnType> = dn.iter().map(|(t, _)| t.clone()).collect();
    assert_eq!(
        types,
        [
            DnType::CountryName,
            DnType::OrganizationName,
            DnType::CommonName
        ]
    );
    assert!(matches!(
        dn.get(&DnType::CountryName),
        Some(DnValue::PrintableString(_))
    ));
    assert_eq!(
        dn.get(&DnType::CommonName),
        Some(&DnValue::Utf8String("svc".into()))
    );
}

#[test]
fn unparseable_subjects_are_refused_with_the_reason() {
    assert_eq!(refused(""), SubjectError::Empty);
    assert_eq!(refused("   "), SubjectError::Empty);
    assert_eq!(
        refused("CN=svc,Acme"),
        SubjectError::NotKeyValue {
            part: "Acme".into()
        }
    );
    assert_eq!(refused("CN=svc,"), SubjectError::EmptyPart);
    assert_eq!(refused(",CN=svc"), SubjectError::EmptyPart);
    assert_eq!(refused("CN=svc,,O=x"), SubjectError::EmptyPart);
    assert_eq!(
        refused("CN=svc,=x"),
        SubjectError::NotKeyValue { part: "=x".into() }
    );
    assert_eq!(
        refused("CN=svc,EMAIL=a@b.c"),
        SubjectError::UnknownAttr {
            key: "EMAIL".into()
        }
    );
    assert_eq!(refused("CN=svc,O="), SubjectError::EmptyValue { key: "O" });
    assert_eq!(refused("CN=a,cn=b"), SubjectError::Duplicate { key: "CN" });
    assert_eq!(refused("O=Acme,C=US"), SubjectError::NoCommonName);
    assert_eq!(refused("CN=a+O=b"), SubjectError::MultiValued);
    assert_eq!(refused(r"CN=svc\"), SubjectError::DanglingEscape);
    assert_eq!(
        refused("CN=svc,C=USA"),
        SubjectError::Country {
            value: "USA".into()
        }
    );
    assert_eq!(
        refused("CN=svc,C=1A"),
        SubjectError::Country { value: "1A".into() }
    );
    assert_eq!(refused("CN=a\tb"), SubjectError::Control { key: "CN" });
}

#[test]
fn values_respect_the_x520_upper_bounds() {
    let cn64 = "x".repeat(64);
    assert!(Subject::parse(&cn64).is_ok());
    assert_eq!(
        refused(&"x".repeat(65)),
        SubjectError::TooLong {
            key: "CN",
            len: 65,
            max: 64
        }
    );
    assert!(Subject::parse(&format!("CN=a,L={}", "l".repeat(128))).is_ok());
    assert!(matches!(
        refused(&format!("CN=a,ST={}", "s".repeat(129))),
        SubjectError::TooLong { key: "ST", .. }
    ));
    // Counted in characters, not bytes.
    assert!(Subject::parse(&"é".repeat(64)).is_ok());
}

#[test]
fn messages_name_what_is_wrong() {
    assert_eq!(
        refused("CN=svc,EMAIL=x").to_string(),
        "unknown attribute `EMAIL` (supported: CN, O, OU, C, L, ST)"
    );
    assert_eq!(
        refused("CN=svc,Acme").to_string(),
        "`Acme` is not KEY=VALUE (separate attributes with `,`)"
    );
}
