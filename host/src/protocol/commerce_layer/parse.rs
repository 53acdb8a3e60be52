//! Commerce Layer's JSON:API request documents, parsed once into the engine's typed
//! request. Included resources are found by type and id, never by position; every missing
//! or malformed field is reported by its path.

use serde_json::{Map, Value};

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

/// One JSON:API resource object.
struct Resource<'a> {
    path: String,
    id: &'a str,
    kind: &'a str,
    attributes: &'a Map<String, Value>,
    relationships: Option<&'a Map<String, Value>>,
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

impl<'a> Resource<'a> {
    fn from(value: &'a Value, path: String) -> Result<Resource<'a>, FieldError> {
        let obj = value
            .as_object()
            .ok_or_else(|| err(&path, "must be an object"))?;
        let id = obj
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| err(format!("{path}.id"), "missing or not a string"))?;
        let kind = obj
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| err(format!("{path}.type"), "missing or not a string"))?;
        let attributes = match obj.get("attributes") {
            None | Some(Value::Null) => &*EMPTY,
            Some(Value::Object(m)) => m,
            Some(_) => return Err(err(format!("{path}.attributes"), "must be an object")),
        };
        let relationships = obj.get("relationships").and_then(Value::as_object);
        Ok(Resource {
            path,
            id,
            kind,
            attributes,
            relationships,
        })
    }

    fn attr_path(&self, name: &str) -> String {
        format!("{}.attributes.{name}", self.path)
    }

    fn str_attr(&self, name: &str) -> Result<Option<&'a str>, FieldError> {
        match self.attributes.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(err(self.attr_path(name), "must be a string")),
        }
    }

    fn required_str(&self, name: &str) -> Result<&'a str, FieldError> {
        self.str_attr(name)?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| err(self.attr_path(name), "missing"))
    }

    fn cents(&self, name: &str) -> Result<Option<u64>, FieldError> {
        match self.attributes.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| err(self.attr_path(name), "must be a whole number of cents >= 0")),
        }
    }

    fn signed_cents(&self, name: &str) -> i64 {
        self.attributes
            .get(name)
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }

    /// `relationships.<name>.data` as (type, id) pairs (one or many).
    fn related(&self, name: &str) -> Vec<(&'a str, &'a str)> {
        let Some(data) = self
            .relationships
            .and_then(|r| r.get(name))
            .and_then(|r| r.get("data"))
        else {
            return Vec::new();
        };
        let one = |v: &'a Value| Some((v.get("type")?.as_str()?, v.get("id")?.as_str()?));
        match data {
            Value::Array(items) => items.iter().filter_map(one).collect(),
            other => one(other).into_iter().collect(),
        }
    }
}

/// The document: `data` and the `included` index.
struct Document<'a> {
    data: Resource<'a>,
    included: Vec<Resource<'a>>,
}

impl<'a> Document<'a> {
    fn parse(value: &'a Value) -> Result<Document<'a>, FieldError> {
        let data = value.get("data").ok_or_else(|| err("data", "missing"))?;
        let data = Resource::from(data, "data".into())?;
        let included = match value.get("included") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| Resource::from(v, format!("included[{i}]")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(err("included", "must be an array")),
        };
        Ok(Document { data, included })
    }

    fn find(&self, kind: &str, id: &str) -> Option<&Resource<'a>> {
        self.included.iter().find(|r| r.kind == kind && r.id == id)
    }

    /// The first related resource of `from` under `name` that is included.
    fn follow(&self, from: &Resource<'a>, name: &str) -> Option<&Resource<'a>> {
        from.related(name)
            .into_iter()
            .find_map(|(kind, id)| self.find(kind, id))
    }

    fn order(&self) -> Option<&Resource<'a>> {
        self.follow(&self.data, "order")
    }
}

fn address(r: &Resource) -> Address {
    let s = |name: &str| r.str_attr(name).ok().flatten().map(str::to_owned);
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

fn metadata(attributes: &Map<String, Value>) -> Vec<Pair> {
    match attributes.get("metadata") {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| Pair {
                key: k.clone(),
                value: match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn normalise_order(doc: &Document, order: &Resource) -> Order {
    let s = |name: &str| order.str_attr(name).ok().flatten().map(str::to_owned);
    let line_items = order
        .related("line_items")
        .into_iter()
        .filter_map(|(kind, id)| doc.find(kind, id))
        .map(|li| LineItem {
            sku_code: li.str_attr("sku_code").ok().flatten().map(str::to_owned),
            name: li.str_attr("name").ok().flatten().map(str::to_owned),
            quantity: li
                .attributes
                .get("quantity")
                .and_then(Value::as_u64)
                .unwrap_or(0) as u32,
            unit_amount_cents: li.signed_cents("unit_amount_cents"),
            total_amount_cents: li.signed_cents("total_amount_cents"),
            item_type: li.str_attr("item_type").ok().flatten().map(str::to_owned),
        })
        .collect();
    Order {
        id: order.id.to_owned(),
        number: match order.attributes.get("number") {
            Some(Value::String(n)) => Some(n.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        },
        customer_email: s("customer_email"),
        language_code: s("language_code"),
        country_code: s("country_code"),
        billing_address: doc.follow(order, "billing_address").map(address),
        shipping_address: doc.follow(order, "shipping_address").map(address),
        line_items,
        metadata: metadata(order.attributes),
    }
}

fn expect_type(doc: &Document, types: &[&str]) -> Result<(), FieldError> {
    if types.contains(&doc.data.kind) {
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
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        err(
            "body",
            format!("not JSON (line {}, column {})", e.line(), e.column()),
        )
    })?;
    let doc = Document::parse(&value)?;
    let data = &doc.data;
    let order = doc.order();
    let mut req = PaymentRequest {
        gateway: gateway.to_owned(),
        action,
        natural_key: String::new(),
        resource_id: data.id.to_owned(),
        amount_cents: 0,
        currency: String::new(),
        payment_source_token: None,
        parent_token: None,
        customer_token: None,
        customer_email: order
            .and_then(|o| o.str_attr("customer_email").ok().flatten())
            .map(str::to_owned),
        order: order.map(|o| normalise_order(&doc, o)),
        options_json: None,
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
            req.currency = order.required_str("currency_code")?.to_owned();
            req.payment_source_token = Some(token.to_owned());
            req.options_json = match data.attributes.get("options") {
                Some(v @ Value::Object(_)) => Some(v.to_string()),
                _ => None,
            };
            req.customer_token = data
                .str_attr("customer_token")
                .ok()
                .flatten()
                .map(str::to_owned);
            req.natural_key = format!("{}:{}", data.id, req.amount_cents);
        }
        Action::Capture | Action::Void => {
            expect_type(&doc, &["authorizations"])?;
            req.parent_token = Some(data.required_str("token")?.to_owned());
            req.currency = data.required_str("currency_code")?.to_owned();
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
                req.natural_key = data.id.to_owned();
            }
        }
        Action::Refund => {
            expect_type(&doc, &["captures"])?;
            req.parent_token = Some(data.required_str("token")?.to_owned());
            req.currency = data.required_str("currency_code")?.to_owned();
            let full = data
                .cents("amount_cents")?
                .ok_or_else(|| err(data.attr_path("amount_cents"), "missing"))?;
            req.amount_cents = data.cents("refund_amount_cents")?.unwrap_or(full);
            let balance = data.cents("refund_balance_cents")?;
            req.natural_key = format!("{}:{}:{:?}", data.id, req.amount_cents, balance);
        }
        Action::Token => {
            let token = data.required_str("payment_source_token")?;
            req.payment_source_token = Some(token.to_owned());
            req.customer_token = data
                .str_attr("customer_token")
                .ok()
                .flatten()
                .map(str::to_owned);
            if req.customer_email.is_none() {
                req.customer_email = doc
                    .follow(data, "customer")
                    .or_else(|| order.and_then(|o| doc.follow(o, "customer")))
                    .and_then(|c| c.str_attr("email").ok().flatten())
                    .map(str::to_owned);
            }
            req.currency = order
                .and_then(|o| o.str_attr("currency_code").ok().flatten())
                .unwrap_or("")
                .to_owned();
            req.natural_key = data.id.to_owned();
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
                {"id": "li-1", "type": "line_items", "attributes": {"sku_code": "TSHIRT", "name": "T-shirt", "quantity": 2, "unit_amount_cents": 6100, "total_amount_cents": 12200, "item_type": "skus"}}
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
