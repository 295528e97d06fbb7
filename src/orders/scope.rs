//! Account scoping (§10): a caller with `accounts` or `customers` may name only those, in an
//! order's body, in a path segment after `accounts` or `customers`, or in the query
//! parameters `accountIdentifier` and `customerIdentifier`; and may not list what would show
//! other callers' data (a `GET` of a path ending in `/orders`, `/accounts` or `/customers`
//! that names no identifier).
//!
//! Invariant: identifiers are compared after percent-decoding, so an encoding can never pass
//! an identifier the caller may not use.

use std::borrow::Cow;

use http::Method;
use percent_encoding::percent_decode_str;

use super::callers::Caller;
use super::order::Order;

/// Why a scoped caller's request is refused (`403 gateway.account_forbidden`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Forbidden(pub &'static str);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Account,
    Customer,
}

impl Caller {
    fn may_use(&self, kind: Kind, id: &str) -> bool {
        let list = match kind {
            Kind::Account => &self.accounts,
            Kind::Customer => &self.customers,
        };
        list.as_ref()
            .is_none_or(|allowed| allowed.iter().any(|a| a == id))
    }
}

fn refusal(kind: Kind) -> Forbidden {
    Forbidden(match kind {
        Kind::Account => "this caller may not use that account",
        Kind::Customer => "this caller may not use that customer",
    })
}

fn decode(raw: &str) -> Cow<'_, str> {
    percent_decode_str(raw).decode_utf8_lossy()
}

/// Checks the identifiers a request names in its path and query.
pub(crate) fn check_target(
    caller: &Caller,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Result<(), Forbidden> {
    let mut named = false;
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for pair in segments.windows(2) {
        let kind = match pair[0] {
            "accounts" => Kind::Account,
            "customers" => Kind::Customer,
            _ => continue,
        };
        named = true;
        if !caller.may_use(kind, &decode(pair[1])) {
            return Err(refusal(kind));
        }
    }
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let kind = match &*key {
            "accountIdentifier" => Kind::Account,
            "customerIdentifier" => Kind::Customer,
            _ => continue,
        };
        named = true;
        if !caller.may_use(kind, &value) {
            return Err(refusal(kind));
        }
    }
    let listing = matches!(
        segments.last(),
        Some(&("orders" | "accounts" | "customers"))
    );
    if *method == Method::GET && listing && !named {
        return Err(Forbidden(
            "a listing that names no account or customer would show other callers' data: name yours (accountIdentifier or customerIdentifier)",
        ));
    }
    Ok(())
}

/// Checks the identifiers an order's body names. A scoped caller's order must name its
/// account (and its customer): one that names none would leave the choice to Tango.
pub(crate) fn check_order(caller: &Caller, order: &Order) -> Result<(), Forbidden> {
    for (kind, field, scoped) in [
        (Kind::Account, &order.account, caller.accounts.is_some()),
        (Kind::Customer, &order.customer, caller.customers.is_some()),
    ] {
        match field {
            Some(id) if !caller.may_use(kind, id) => return Err(refusal(kind)),
            None if scoped => {
                return Err(Forbidden(match kind {
                    Kind::Account => "this caller's orders must name their accountIdentifier",
                    Kind::Customer => "this caller's orders must name their customerIdentifier",
                }))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn payouts() -> Caller {
        Caller {
            name: Arc::from("payouts"),
            accounts: Some(vec!["A-PAY".into()]),
            customers: Some(vec!["C-PAY".into()]),
            spend_limit: None,
        }
    }

    fn check(method: Method, target: &str) -> Result<(), Forbidden> {
        let (path, query) = target
            .split_once('?')
            .map_or((target, None), |(p, q)| (p, Some(q)));
        check_target(&payouts(), &method, path, query)
    }

    #[test]
    fn path_segments_and_query_parameters_are_checked() {
        assert!(check(Method::GET, "/raas/v2/accounts/A-PAY").is_ok());
        assert!(check(Method::GET, "/raas/v2/accounts/A-OTHER").is_err());
        assert!(check(Method::GET, "/raas/v2/customers/C-PAY/accounts").is_ok());
        assert!(check(Method::GET, "/raas/v2/customers/C-OTHER/accounts").is_err());
        assert!(check(Method::GET, "/raas/v2/orders?accountIdentifier=A-PAY").is_ok());
        assert!(check(Method::GET, "/raas/v2/orders?accountIdentifier=A-OTHER").is_err());
        assert!(check(
            Method::GET,
            "/raas/v2/orders?customerIdentifier=C-OTHER&accountIdentifier=A-PAY"
        )
        .is_err());
        assert!(check(Method::GET, "/raas/v2/catalogs").is_ok());
        assert!(check(Method::GET, "/raas/v2/orders/RA123").is_ok());
    }

    #[test]
    fn an_encoded_identifier_is_compared_decoded() {
        assert!(check(Method::GET, "/raas/v2/accounts/A%2DOTHER").is_err());
        assert!(check(Method::GET, "/raas/v2/accounts/A%2DPAY").is_ok());
        assert!(check(Method::GET, "/raas/v2/orders?accountIdentifier=A%2DOTHER").is_err());
    }

    #[test]
    fn a_listing_that_names_nothing_is_refused() {
        for path in ["/raas/v2/orders", "/raas/v2/accounts", "/raas/v2/customers"] {
            assert!(check(Method::GET, path).is_err(), "{path}");
        }
        // Listing is a GET; an order is checked on its body instead.
        assert!(check(Method::POST, "/raas/v2/orders").is_ok());
    }

    #[test]
    fn an_order_must_name_the_callers_own_account_and_customer() {
        let order = |account: Option<&str>, customer: Option<&str>| Order {
            account: account.map(str::to_owned),
            customer: customer.map(str::to_owned),
            amount: Some(1.0),
            external_ref: None,
            utid: None,
            hash: String::new(),
        };
        let caller = payouts();
        assert!(check_order(&caller, &order(Some("A-PAY"), Some("C-PAY"))).is_ok());
        assert!(check_order(&caller, &order(Some("A-OTHER"), Some("C-PAY"))).is_err());
        assert!(check_order(&caller, &order(Some("A-PAY"), Some("C-OTHER"))).is_err());
        assert!(check_order(&caller, &order(None, Some("C-PAY"))).is_err());
        let unscoped = Caller {
            name: Arc::from("any"),
            accounts: None,
            customers: None,
            spend_limit: None,
        };
        assert!(check_order(&unscoped, &order(None, None)).is_ok());
    }
}
