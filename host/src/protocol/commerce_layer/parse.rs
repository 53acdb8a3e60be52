//! Commerce Layer's JSON:API request documents, parsed once into the engine's typed
//! request. Included resources are found by type and id, never by position; every missing
//! or malformed field is reported by its path.

use std::borrow::Cow;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::protocol::raw::{Fields, Text, is_object};

use crate::payments::PaymentRequest;
use crate::plugins::types::{Address, LineItem, Order, Pair};
use crate::store::Action;

/// A field that is missing or malformed, named by its JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct FieldError {
    pub path: String,
    pub problem: String,
}

fn err(path: impl Into<String>, problem: impl Into<String>) -> FieldError {
    FieldError {
        path: path.into(),
        problem: problem.into(),
    }
}

/// Where a resource sits in the document, for error paths.
#[derive(Clone, Copy)]
enum Place {
    Data,
    Included(usize),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Data => f.write_str("data"),
            Place::Included(i) => write!(f, "included[{i}]"),
        }
    }
}

/// A resource as found in the document: its identity, the rest left raw until used.
struct Entry<'a> {
    place: Place,
    id: Cow<'a, str>,
    kind: Cow<'a, str>,
    attributes: Option<&'a RawValue>,
    relationships: Option<&'a RawValue>,
}

impl<'a> Entry<'a> {
    /// Checks what every resource must have: an object with a string id and type, and
    /// attributes that are an object if present.
    fn from(raw: &'a RawValue, place: Place) -> Result<Entry<'a>, FieldError> {
        let fields = Fields::of(raw).ok_or_else(|| err(place.to_string(), "must be an object"))?;
        let text = |name: &str| fields.get(name).and_then(Text::of);
        let id = text("id")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| err(format!("{place}.id"), "missing or not a string"))?;
        let kind =
            text("type").ok_or_else(|| err(format!("{place}.type"), "missing or not a string"))?;
        let attributes = fields.value("attributes");
        if attributes.is_some_and(|a| !is_object(a)) {
            return Err(err(format!("{place}.attributes"), "must be an object"));
        }
        Ok(Entry {
            place,
            id,
            kind,
            attributes,
            relationships: fields.value("relationships").filter(|r| is_object(r)),
        })
    }

    /// The resource with its members read (its attributes are known to be an object).
    fn open(&self) -> Resource<'a> {
        let members = |raw: Option<&'a RawValue>| raw.and_then(Fields::of).unwrap_or_default();
        Resource {
            place: self.place,
            id: self.id.clone(),
            kind: self.kind.clone(),
            attributes: members(self.attributes),
            relationships: members(self.relationships),
        }
    }
}

/// One JSON:API resource object, its attributes read as asked for.
struct Resource<'a> {
    place: Place,
    id: Cow<'a, str>,
    kind: Cow<'a, str>,
    attributes: Fields<'a>,
    relationships: Fields<'a>,
}

impl<'a> Resource<'a> {
    fn attr_path(&self, name: &str) -> String {
        format!("{}.attributes.{name}", self.place)
    }

    fn str_attr(&self, name: &str) -> Result<Option<Cow<'a, str>>, FieldError> {
        match self.attributes.value(name) {
            None => Ok(None),
            Some(v) => Text::of(v)
                .map(Some)
                .ok_or_else(|| err(self.attr_path(name), "must be a string")),
        }
    }

    /// A string attribute, `None` if absent or not a string.
    fn text(&self, name: &str) -> Option<String> {
        self.str_attr(name).ok().flatten().map(Cow::into_owned)
    }

    fn required_str(&self, name: &str) -> Result<Cow<'a, str>, FieldError> {
        self.str_attr(name)?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| err(self.attr_path(name), "missing"))
    }

    /// An attribute as a value of `T`, `None` if absent or of another kind.
    fn number<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        serde_json::from_str(self.attributes.value(name)?.get()).ok()
    }

    fn cents(&self, name: &str) -> Result<Option<u64>, FieldError> {
        match self.attributes.value(name) {
            None => Ok(None),
            Some(v) => serde_json::from_str::<u64>(v.get())
                .map(Some)
                .map_err(|_| err(self.attr_path(name), "must be a whole number of cents >= 0")),
        }
    }

    fn signed_cents(&self, name: &str) -> i64 {
        self.number(name).unwrap_or(0)
    }

    /// An attribute as a JSON tree (for the few that are passed on whole).
    fn tree(&self, name: &str) -> Option<Value> {
        serde_json::from_str(self.attributes.value(name)?.get()).ok()
    }

    /// `relationships.<name>.data` as (type, id) pairs (one or many).
    fn related(&self, name: &str) -> Vec<(Cow<'a, str>, Cow<'a, str>)> {
        let Some(data) = self
            .relationships
            .get(name)
            .and_then(Fields::of)
            .and_then(|r| r.get("data"))
        else {
            return Vec::new();
        };
        let one = |v: &'a RawValue| {
            let f = Fields::of(v)?;
            Some((Text::of(f.get("type")?)?, Text::of(f.get("id")?)?))
        };
        if data.get().starts_with('[') {
            serde_json::from_str::<Vec<&RawValue>>(data.get())
                .map(|items| items.into_iter().filter_map(one).collect())
                .unwrap_or_default()
        } else {
            one(data).into_iter().collect()
        }
    }
}

/// The document: `data` and the `included` index.
struct Document<'a> {
    data: Resource<'a>,
    included: Vec<Entry<'a>>,
}

impl<'a> Document<'a> {
    fn parse(body: &'a str) -> Result<Document<'a>, FieldError> {
        let top: Fields = serde_json::from_str(body).map_err(|e| {
            if e.is_data() {
                // JSON, but not an object: it has no `data`.
                err("data", "missing")
            } else {
                not_json(&e)
            }
        })?;
        let data = top.get("data").ok_or_else(|| err("data", "missing"))?;
        let data = Entry::from(data, Place::Data)?.open();
        let included = match top.value("included") {
            None => Vec::new(),
            Some(items) => serde_json::from_str::<Vec<&RawValue>>(items.get())
                .map_err(|_| err("included", "must be an array"))?
                .into_iter()
                .enumerate()
                .map(|(i, v)| Entry::from(v, Place::Included(i)))
                .collect::<Result<_, _>>()?,
        };
        Ok(Document { data, included })
    }

    fn find(&self, kind: &str, id: &str) -> Option<Resource<'a>> {
        self.included
            .iter()
            .find(|r| r.kind == kind && r.id == id)
            .map(Entry::open)
    }

    /// The first related resource of `from` under `name` that is included.
    fn follow(&self, from: &Resource<'a>, name: &str) -> Option<Resource<'a>> {
        from.related(name)
            .into_iter()
            .find_map(|(kind, id)| self.find(&kind, &id))
    }

    fn order(&self) -> Option<Resource<'a>> {
        self.follow(&self.data, "order")
    }
}

fn not_json(e: &serde_json::Error) -> FieldError {
    err(
        "body",
        format!("not JSON (line {}, column {})", e.line(), e.column()),
    )
}

fn address(r: Resource) -> Address {
    let s = |name: &str| r.text(name);
    Address {
        first_name: s("first_name"),
        last_name: s("last_name"),
        company: s("company"),
        line1: s("line_1"),
        line2: s("line_2"),
        city: s("city"),
        zip_code: s("zip_code"),
        state_code: s("state_code"),
        country_code: s("country_code"),
        phone: s("phone"),
        email: s("email"),
    }
}

fn metadata(r: &Resource) -> Vec<Pair> {
    match r.tree("metadata") {
        Some(Value::Object(m)) => m
            .into_iter()
            .map(|(key, v)| Pair {
                key,
                value: match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                },
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn normalise_order(doc: &Document, order: &Resource) -> Order {
    let line_items = order
        .related("line_items")
        .into_iter()
        .filter_map(|(kind, id)| doc.find(&kind, &id))
        .map(|li| LineItem {
            sku_code: li.text("sku_code"),
            name: li.text("name"),
            // Beyond u32 is no quantity at all: 0, never the value wrapped.
            quantity: li.number::<u32>("quantity").unwrap_or(0),
            unit_amount_cents: li.signed_cents("unit_amount_cents"),
            total_amount_cents: li.signed_cents("total_amount_cents"),
            item_type: li.text("item_type"),
            tax_amount_cents: li.signed_cents("tax_amount_cents"),
            // CL writes a line's discount as a negative amount; the contract's is positive.
            discount_amount_cents: li.signed_cents("discount_cents").saturating_abs(),
        })
        .collect();
    Order {
        id: order.id.clone().into_owned(),
        number: match order.tree("number") {
            Some(Value::String(n)) => Some(n),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        },
        customer_email: order.text("customer_email"),
        language_code: order.text("language_code"),
        country_code: order.text("country_code"),
        billing_address: doc.follow(order, "billing_address").map(address),
        shipping_address: doc.follow(order, "shipping_address").map(address),
        line_items,
        metadata: metadata(order),
    }
}

fn expect_type(doc: &Document, types: &[&str]) -> Result<(), FieldError> {
    if types.contains(&&*doc.data.kind) {
        Ok(())
    } else {
        Err(err(
            "data.type",
            format!(
                "`{}` where {} was expected",
                doc.data.kind,
                types.join(" or ")
            ),
        ))
    }
}

/// Parses a request body for `action` on `gateway`.
pub fn parse(gateway: &str, action: Action, body: &[u8]) -> Result<PaymentRequest, FieldError> {
    let body = std::str::from_utf8(body).map_err(|e| {
        err(
            "body",
            format!("not JSON (not UTF-8 at byte {})", e.valid_up_to()),
        )
    })?;
    let doc = Document::parse(body)?;
    let data = &doc.data;
    let order = doc.order();
    let order = order.as_ref();
    let mut req = PaymentRequest {
        gateway: gateway.to_owned(),
        action,
        natural_key: String::new(),
        resource_id: data.id.clone().into_owned(),
        amount_cents: 0,
        currency: String::new(),
        payment_source_token: None,
        parent_token: None,
        customer_token: None,
        customer_email: order.and_then(|o| o.text("customer_email")),
        order: order.map(|o| normalise_order(&doc, o)),
        options_json: None,
        shopper: None,
    };
    match action {
        Action::Authorize | Action::Sale => {
            expect_type(&doc, &["external_payments"])?;
            let token = data.required_str("payment_source_token")?;
            let order = order.ok_or_else(|| {
                err(
                    "data.relationships.order",
                    "missing, or the order is not included",
                )
            })?;
            req.amount_cents = order
                .cents("total_amount_with_taxes_cents")?
                .ok_or_else(|| err(order.attr_path("total_amount_with_taxes_cents"), "missing"))?;
            req.currency = order.required_str("currency_code")?.into_owned();
            req.payment_source_token = Some(token.into_owned());
            req.options_json = match data.tree("options") {
                Some(v @ Value::Object(_)) => Some(v.to_string()),
                _ => None,
            };
            req.customer_token = data.text("customer_token");
            req.natural_key = format!("{}:{}", data.id, req.amount_cents);
        }
        Action::Capture | Action::Void => {
            expect_type(&doc, &["authorizations"])?;
            req.parent_token = Some(data.required_str("token")?.into_owned());
            req.currency = data.required_str("currency_code")?.into_owned();
            let full = data
                .cents("amount_cents")?
                .ok_or_else(|| err(data.attr_path("amount_cents"), "missing"))?;
            if action == Action::Capture {
                req.amount_cents = data.cents("capture_amount_cents")?.unwrap_or(full);
                // The balance moves after each capture, so a second partial capture of the
                // same amount is a new operation while a re-sent one is not.
                let balance = data.cents("capture_balance_cents")?;
                req.natural_key = format!("{}:{}:{:?}", data.id, req.amount_cents, balance);
            } else {
                req.amount_cents = data
                    .cents("void_balance_cents")?
                    .filter(|v| *v > 0)
                    .unwrap_or(full);
                req.natural_key = data.id.clone().into_owned();
            }
        }
        Action::Refund => {
            expect_type(&doc, &["captures"])?;
            req.parent_token = Some(data.required_str("token")?.into_owned());
            req.currency = data.required_str("currency_code")?.into_owned();
            let full = data
                .cents("amount_cents")?
                .ok_or_else(|| err(data.attr_path("amount_cents"), "missing"))?;
            req.amount_cents = data.cents("refund_amount_cents")?.unwrap_or(full);
            let balance = data.cents("refund_balance_cents")?;
            req.natural_key = format!("{}:{}:{:?}", data.id, req.amount_cents, balance);
        }
        Action::Token => {
            let token = data.required_str("payment_source_token")?;
            req.payment_source_token = Some(token.into_owned());
            req.customer_token = data.text("customer_token");
            if req.customer_email.is_none() {
                req.customer_email = doc
                    .follow(data, "customer")
                    .or_else(|| order.and_then(|o| doc.follow(o, "customer")))
                    .and_then(|c| c.text("email"));
            }
            req.currency = order
                .and_then(|o| o.text("currency_code"))
                .unwrap_or_default();
            req.natural_key = data.id.clone().into_owned();
        }
    }
    // Three ASCII letters, upper-cased: what plugins forward to the PSP as ISO 4217 (the
    // fuzzer found "EU&" accepted when only the length was checked).
    let letters = req.currency.len() == 3 && req.currency.bytes().all(|b| b.is_ascii_alphabetic());
    req.currency.make_ascii_uppercase();
    if action != Action::Token && !letters {
        return Err(err(
            if matches!(action, Action::Authorize | Action::Sale) {
                "included order.attributes.currency_code"
            } else {
                "data.attributes.currency_code"
            },
            "must be an ISO 4217 code",
        ));
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_currency_is_three_letters_upper_cased() {
        let body = |code: &str| {
            serde_json::to_vec(
                &serde_json::json!({"data": {"id": "c1", "type": "authorizations",
                "attributes": {"token": "t1", "currency_code": code, "amount_cents": 1000,
                "capture_amount_cents": 1000}}}),
            )
            .unwrap()
        };
        for bad in ["EU&", "E1R", "EURO", "", "€"] {
            assert!(parse("gw", Action::Capture, &body(bad)).is_err(), "{bad:?}");
        }
        let req = parse("gw", Action::Capture, &body("eur")).unwrap();
        assert_eq!(req.currency, "EUR");
    }
    use serde_json::json;

    fn authorize_doc() -> Value {
        json!({
            "data": {
                "id": "ext-1", "type": "external_payments",
                "attributes": {"payment_source_token": "tok_visa", "options": {"x": 1}},
                "relationships": {"order": {"data": {"type": "orders", "id": "ord-1"}}}
            },
            "included": [
                {"id": "li-2", "type": "line_items", "attributes": {"sku_code": "SHIP", "quantity": 1, "unit_amount_cents": 700, "total_amount_cents": 700, "item_type": "shipments"}},
                {"id": "ad-1", "type": "addresses", "attributes": {"first_name": "Ann", "line_1": "Via Roma 1", "city": "Milano", "country_code": "IT"}},
                {"id": "ord-1", "type": "orders", "attributes": {
                    "number": 42, "currency_code": "EUR", "customer_email": "ann@example.com",
                    "total_amount_with_taxes_cents": 12900, "metadata": {"channel": "web", "n": 3}},
                 "relationships": {
                    "line_items": {"data": [{"type": "line_items", "id": "li-1"}, {"type": "line_items", "id": "li-2"}]},
                    "billing_address": {"data": {"type": "addresses", "id": "ad-1"}}}},
                {"id": "li-1", "type": "line_items", "attributes": {"sku_code": "TSHIRT", "name": "T-shirt", "quantity": 2, "unit_amount_cents": 6100, "total_amount_cents": 12200, "item_type": "skus", "tax_amount_cents": 2200, "discount_cents": -500}}
            ]
        })
    }

    fn parse_value(action: Action, v: &Value) -> Result<PaymentRequest, FieldError> {
        parse("gw", action, &serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn authorize_reads_order_by_type_and_id() {
        let req = parse_value(Action::Authorize, &authorize_doc()).unwrap();
        assert_eq!(req.amount_cents, 12900);
        assert_eq!(req.currency, "EUR");
        assert_eq!(req.payment_source_token.as_deref(), Some("tok_visa"));
        assert_eq!(req.natural_key, "ext-1:12900");
        let order = req.order.unwrap();
        assert_eq!(order.number.as_deref(), Some("42"));
        assert_eq!(order.customer_email.as_deref(), Some("ann@example.com"));
        assert_eq!(order.line_items.len(), 2);
        assert_eq!(order.line_items[0].sku_code.as_deref(), Some("TSHIRT"));
        assert_eq!(order.line_items[0].tax_amount_cents, 2200);
        assert_eq!(order.line_items[0].discount_amount_cents, 500);
        assert_eq!(order.line_items[1].tax_amount_cents, 0);
        assert_eq!(
            order.billing_address.unwrap().city.as_deref(),
            Some("Milano")
        );
        assert!(order.shipping_address.is_none());
        assert!(
            order
                .metadata
                .iter()
                .any(|p| p.key == "n" && p.value == "3")
        );
        assert_eq!(req.options_json.as_deref(), Some(r#"{"x":1}"#));
    }

    #[test]
    fn missing_fields_are_named() {
        let mut doc = authorize_doc();
        doc["data"]["attributes"]
            .as_object_mut()
            .unwrap()
            .remove("payment_source_token");
        let Err(e) = parse_value(Action::Authorize, &doc) else {
            panic!()
        };
        assert_eq!(e.path, "data.attributes.payment_source_token");

        let mut doc = authorize_doc();
        doc["included"][2]["attributes"]["total_amount_with_taxes_cents"] = json!("12.90");
        let Err(e) = parse_value(Action::Authorize, &doc) else {
            panic!()
        };
        assert_eq!(
            e.path,
            "included[2].attributes.total_amount_with_taxes_cents"
        );

        let mut doc = authorize_doc();
        doc["included"] = json!([]);
        let Err(e) = parse_value(Action::Authorize, &doc) else {
            panic!()
        };
        assert_eq!(e.path, "data.relationships.order");

        let Err(e) = parse("gw", Action::Capture, b"{nope") else {
            panic!()
        };
        assert_eq!(e.path, "body");

        let Err(e) = parse_value(Action::Capture, &authorize_doc()) else {
            panic!()
        };
        assert_eq!(e.path, "data.type");
    }

    #[test]
    fn capture_and_refund_amounts() {
        let auth = json!({"data": {"id": "auth-1", "type": "authorizations", "attributes": {
            "token": "t1", "currency_code": "EUR", "amount_cents": 1000,
            "capture_amount_cents": 400, "capture_balance_cents": 1000}}});
        let req = parse_value(Action::Capture, &auth).unwrap();
        assert_eq!(
            (req.amount_cents, req.parent_token.as_deref()),
            (400, Some("t1"))
        );
        let mut no_partial = auth.clone();
        no_partial["data"]["attributes"]
            .as_object_mut()
            .unwrap()
            .remove("capture_amount_cents");
        assert_eq!(
            parse_value(Action::Capture, &no_partial)
                .unwrap()
                .amount_cents,
            1000
        );
        let void = parse_value(Action::Void, &auth).unwrap();
        assert_eq!(
            (void.amount_cents, void.natural_key.as_str()),
            (1000, "auth-1")
        );

        let cap = json!({"data": {"id": "cap-1", "type": "captures", "attributes": {
            "token": "c1", "currency_code": "EUR", "amount_cents": 1000, "refund_amount_cents": 250}}});
        let req = parse_value(Action::Refund, &cap).unwrap();
        assert_eq!(req.amount_cents, 250);
    }

    #[test]
    fn amounts_beyond_u64_are_named_not_wrapped() {
        // 2^64: JSON allows it, u64 cannot hold it.
        let body = br#"{"data": {"id": "auth-1", "type": "authorizations", "attributes": {
            "token": "t1", "currency_code": "EUR", "amount_cents": 1000,
            "capture_amount_cents": 18446744073709551616}}}"#;
        let e = parse("gw", Action::Capture, body).unwrap_err();
        assert_eq!(e.path, "data.attributes.capture_amount_cents");
        // 2^64 - 1 fits: it is parsed as sent, and the engine's bound refuses it.
        let body =
            String::from_utf8_lossy(body).replace("18446744073709551616", "18446744073709551615");
        let req = parse("gw", Action::Capture, body.as_bytes()).unwrap();
        assert_eq!(req.amount_cents, u64::MAX);
    }

    #[test]
    fn a_quantity_beyond_u32_is_none_rather_than_wrapped() {
        // 10 * 2^32 + 1 wrapped to u32 would read as 1 (found by the fuzzer).
        let mut doc = authorize_doc();
        doc["included"][3]["attributes"]["quantity"] = json!(42_949_672_961_u64);
        let order = parse_value(Action::Authorize, &doc).unwrap().order.unwrap();
        assert_eq!(order.line_items[0].sku_code.as_deref(), Some("TSHIRT"));
        assert_eq!(order.line_items[0].quantity, 0);
        doc["included"][3]["attributes"]["quantity"] = json!(u32::MAX);
        let order = parse_value(Action::Authorize, &doc).unwrap().order.unwrap();
        assert_eq!(order.line_items[0].quantity, u32::MAX);
    }

    #[test]
    fn card_numbers_are_left_to_the_engine() {
        let mut doc = authorize_doc();
        doc["data"]["attributes"]["payment_source_token"] = json!("4111111111111111");
        let req = parse_value(Action::Authorize, &doc).unwrap();
        assert!(crate::payments::bounds::looks_like_card_number(
            req.payment_source_token.as_deref().unwrap(),
            false
        ));
    }
}
