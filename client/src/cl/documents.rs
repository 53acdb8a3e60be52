//! The payment resources CL keeps (external payments, authorizations, captures, voids and
//! refunds), how CL records one from a gateway's answer, and the five request documents
//! built from them.

use serde_json::{Map, Value, json};

use super::client::Response;
use super::jsonapi::{attrs, common_attrs, ident, new_id, put_money, resource};
use super::order::Order;

/// call is about. Its `id` is the natural idempotency key of an authorize.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalPayment {
    pub id: String,
    pub payment_source_token: String,
    pub options: Value,
    pub payment_instrument: Value,
    pub metadata: Value,
    pub reference: Option<String>,
    pub order: Order,
}

impl ExternalPayment {
    /// A new external payment on `order` with the PSP's `payment_source_token`.
    pub fn new(order: &Order, payment_source_token: &str) -> ExternalPayment {
        ExternalPayment {
            id: new_id(),
            payment_source_token: payment_source_token.into(),
            options: json!({}),
            payment_instrument: json!({}),
            metadata: json!({}),
            reference: None,
            order: order.clone(),
        }
    }

    /// The `external_payments` resource (relationship `order`).
    pub fn resource(&self) -> Value {
        let mut a = attrs(json!({
            "payment_source_token": self.payment_source_token,
            "options": self.options,
            "payment_instrument": self.payment_instrument,
        }));
        common_attrs(&mut a, &self.metadata);
        a.insert("reference".into(), json!(self.reference));
        let rels = vec![
            ("order", Some(ident("orders", &self.order.id))),
            ("payment_gateway", None),
            ("wallet", None),
            ("versions", None),
        ];
        resource("external_payments", &self.id, a, rels)
    }
}

/// An authorization as CL records it from a gateway's authorize answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorization {
    pub id: String,
    /// `<order number>/T/<nnn>`.
    pub number: String,
    /// The `transaction_token` the gateway answered.
    pub token: String,
    pub gateway_transaction_id: Option<String>,
    pub amount_cents: i64,
    pub currency: String,
    /// What is left to capture.
    pub capture_balance_cents: i64,
    /// What is left to void.
    pub void_balance_cents: i64,
    /// False while pending (answered 202) until a successful callback.
    pub succeeded: bool,
    pub action_id: Option<String>,
    /// The `metadata` the gateway answered (CL copies it onto the transaction).
    pub metadata: Value,
    pub message: Option<String>,
    pub external_payment_id: String,
    pub order: Order,
}

/// A capture as CL records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    pub id: String,
    pub number: String,
    pub token: String,
    pub gateway_transaction_id: Option<String>,
    pub amount_cents: i64,
    pub currency: String,
    /// What is left to refund.
    pub refund_balance_cents: i64,
    pub succeeded: bool,
    pub action_id: Option<String>,
    pub metadata: Value,
    pub message: Option<String>,
    pub authorization_id: String,
    pub order: Order,
}

/// A void or a refund as CL records it (`parent_id`: the authorization or the capture).
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    pub id: String,
    pub number: String,
    pub token: String,
    pub amount_cents: i64,
    pub succeeded: bool,
    pub action_id: Option<String>,
    pub parent_id: String,
}

/// What CL stores in the customer wallet after a customer token call.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedSource {
    pub customer_token: Option<String>,
    pub payment_source_token: String,
}

/// The fields CL's transaction resources (`authorizations`, `captures`...) share.
struct TxFields<'a> {
    kind: &'a str,
    number: &'a str,
    token: &'a str,
    gateway_transaction_id: Option<&'a str>,
    amount: i64,
    currency: &'a str,
    succeeded: bool,
    metadata: &'a Value,
}

impl TxFields<'_> {
    fn attributes(&self) -> Map<String, Value> {
        let mut a = attrs(json!({
            "number": self.number,
            "type": self.kind,
            "payment_method_type": "external_payments",
            "currency_code": self.currency,
            "succeeded": self.succeeded,
            "message": if self.succeeded { "Accepted" } else { "Pending" },
            "error_code": null,
            "error_detail": null,
            "token": self.token,
            "gateway_transaction_id": self.gateway_transaction_id,
        }));
        put_money(&mut a, "amount", self.amount, self.currency);
        common_attrs(&mut a, self.metadata);
        a
    }
}

impl Authorization {
    /// The `authorizations` resource CL sends for a capture (`capture_amount` = the amount
    /// to capture now) or a void (`capture_amount` = the balance).
    pub fn resource(&self, capture_amount_cents: i64) -> Value {
        let c = &self.currency;
        let mut a = TxFields {
            kind: "authorizations",
            number: &self.number,
            token: &self.token,
            gateway_transaction_id: self.gateway_transaction_id.as_deref(),
            amount: self.amount_cents,
            currency: c,
            succeeded: self.succeeded,
            metadata: &self.metadata,
        }
        .attributes();
        for field in [
            "cvv_code",
            "cvv_message",
            "avs_code",
            "avs_message",
            "fraud_review",
        ] {
            a.insert(field.into(), Value::Null);
        }
        put_money(&mut a, "capture_amount", capture_amount_cents, c);
        put_money(&mut a, "capture_balance", self.capture_balance_cents, c);
        put_money(&mut a, "void_balance", self.void_balance_cents, c);
        let rels = vec![
            ("order", Some(ident("orders", &self.order.id))),
            ("payment_source", None),
            ("captures", None),
            ("voids", None),
            ("attachments", None),
            ("events", None),
            ("versions", None),
        ];
        resource("authorizations", &self.id, a, rels)
    }
}

impl Capture {
    /// The `captures` resource CL sends for a refund of `refund_amount_cents`.
    pub fn resource(&self, refund_amount_cents: i64) -> Value {
        let c = &self.currency;
        let mut a = TxFields {
            kind: "captures",
            number: &self.number,
            token: &self.token,
            gateway_transaction_id: self.gateway_transaction_id.as_deref(),
            amount: self.amount_cents,
            currency: c,
            succeeded: self.succeeded,
            metadata: &self.metadata,
        }
        .attributes();
        put_money(&mut a, "refund_amount", refund_amount_cents, c);
        put_money(&mut a, "refund_balance", self.refund_balance_cents, c);
        let rels = vec![
            ("order", Some(ident("orders", &self.order.id))),
            (
                "reference_authorization",
                Some(ident("authorizations", &self.authorization_id)),
            ),
            ("payment_source", None),
            ("refunds", None),
            ("return", None),
            ("attachments", None),
            ("events", None),
            ("versions", None),
        ];
        resource("captures", &self.id, a, rels)
    }
}

fn document(data: Value, order: &Order) -> Value {
    json!({ "data": data, "included": order.included() })
}

/// Body of an authorize call: `data` = the external payment, `included` = its order and the
/// order's includes.
pub fn authorize_body(payment: &ExternalPayment) -> Value {
    document(payment.resource(), &payment.order)
}

/// The smallest authorize body CL could send: the external payment (null attributes and
/// relationships other than its order left out) with only its order in `included`, without
/// null attributes or relationships; about 4 kB.
pub fn minimal_authorize_body(payment: &ExternalPayment) -> Value {
    fn slim(mut resource: Value, keep: &[&str]) -> Value {
        if let Some(attributes) = resource["attributes"].as_object_mut() {
            attributes.retain(|_, v| !v.is_null());
        }
        if let Some(relationships) = resource["relationships"].as_object_mut() {
            relationships.retain(|k, _| keep.contains(&k.as_str()));
        }
        resource
    }
    json!({
        "data": slim(payment.resource(), &["order"]),
        "included": [slim(payment.order.resource(), &[])],
    })
}

/// Body of a customer token call: the same shape as an authorize (the external payment to
/// save to the customer's wallet, with its order).
pub fn token_body(payment: &ExternalPayment) -> Value {
    authorize_body(payment)
}

/// Body of a capture call of `amount_cents`: `data` = the authorization.
pub fn capture_body(auth: &Authorization, amount_cents: i64) -> Value {
    document(auth.resource(amount_cents), &auth.order)
}

/// Body of a void call: `data` = the authorization.
pub fn void_body(auth: &Authorization) -> Value {
    document(auth.resource(auth.capture_balance_cents), &auth.order)
}

/// Body of a refund call of `amount_cents`: `data` = the capture.
pub fn refund_body(capture: &Capture, amount_cents: i64) -> Value {
    document(capture.resource(amount_cents), &capture.order)
}

/// Finds a resource of `included` by type and id.
pub fn find_included<'a>(doc: &'a Value, kind: &str, id: &str) -> Option<&'a Value> {
    doc["included"]
        .as_array()?
        .iter()
        .find(|r| r["type"] == kind && r["id"] == id)
}

impl Authorization {
    /// The authorization CL records from a 200 or 202 answer to an authorize of `payment`
    /// on `order` (CL's current copy of it), numbered `number`. A 202 records it pending
    /// (`succeeded` false, `action_id` set) until a callback settles it.
    pub fn from_answer(
        payment: &ExternalPayment,
        order: Order,
        number: String,
        resp: &Response,
    ) -> Authorization {
        let amount = resp
            .amount_cents()
            .unwrap_or_else(|| order.total_amount_with_taxes_cents());
        Authorization {
            id: new_id(),
            number,
            token: resp.transaction_token().unwrap_or_default().to_owned(),
            gateway_transaction_id: resp.transaction_token().map(str::to_owned),
            amount_cents: amount,
            currency: order.currency_code.clone(),
            capture_balance_cents: amount,
            void_balance_cents: amount,
            succeeded: resp.is_success(),
            action_id: resp.action_id().map(str::to_owned),
            metadata: resp.body["data"]["metadata"].clone(),
            message: resp.body["data"]["message"].as_str().map(str::to_owned),
            external_payment_id: payment.id.clone(),
            order,
        }
    }
}

impl Capture {
    /// The capture CL records from a 200 or 202 answer to a capture of `asked` cents of
    /// `auth`, numbered `number`; balances are the caller's to move once it succeeds.
    pub fn from_answer(
        auth: &Authorization,
        order: Order,
        number: String,
        asked: i64,
        resp: &Response,
    ) -> Capture {
        let amount = resp.amount_cents().unwrap_or(asked);
        Capture {
            id: new_id(),
            number,
            token: resp.transaction_token().unwrap_or_default().to_owned(),
            gateway_transaction_id: resp.transaction_token().map(str::to_owned),
            amount_cents: amount,
            currency: auth.currency.clone(),
            refund_balance_cents: amount,
            succeeded: resp.is_success(),
            action_id: resp.action_id().map(str::to_owned),
            metadata: resp.body["data"]["metadata"].clone(),
            message: resp.body["data"]["message"].as_str().map(str::to_owned),
            authorization_id: auth.id.clone(),
            order,
        }
    }
}

/// Every `{type, id}` linkage of `resource` that names no resource of `doc`'s `included`,
/// as `relationship -> type/id`. The capture's `reference_authorization` is skipped: CL
/// links it without including it.
pub fn unresolved_linkages(doc: &Value, resource: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    let Some(rels) = resource["relationships"].as_object() else {
        return missing;
    };
    for (name, rel) in rels {
        let targets = match &rel["data"] {
            Value::Array(items) => items.clone(),
            Value::Object(_) => vec![rel["data"].clone()],
            _ => continue,
        };
        if name == "reference_authorization" {
            continue;
        }
        for t in targets {
            let (kind, id) = (
                t["type"].as_str().unwrap_or_default(),
                t["id"].as_str().unwrap_or_default(),
            );
            if find_included(doc, kind, id).is_none() {
                missing.push(format!("{name} -> {kind}/{id}"));
            }
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_linkages_resolve(doc: &Value, resource: &Value) {
        let missing = unresolved_linkages(doc, resource);
        assert!(missing.is_empty(), "not included: {missing:?}");
    }

    fn assert_resource_shape(r: &Value) {
        for key in ["id", "type", "links", "attributes", "relationships", "meta"] {
            assert!(!r[key].is_null(), "{key} missing in {r}");
        }
    }

    #[test]
    fn authorize_body_is_resolvable_by_type_and_id() {
        let order = Order::sample().with_metadata(json!({"cart": "web"}));
        let payment = ExternalPayment::new(&order, "tok_visa");
        let doc = authorize_body(&payment);
        let data = &doc["data"];
        assert_eq!(data["type"], "external_payments");
        assert_eq!(data["id"], payment.id.as_str());
        assert_eq!(data["attributes"]["payment_source_token"], "tok_visa");
        assert_resource_shape(data);

        let included = doc["included"].as_array().unwrap();
        included.iter().for_each(assert_resource_shape);
        assert_ne!(included[0]["type"], "orders", "order must not be first");
        // 1 order + market + customer + 2 addresses + (2 skus + shipment + promotion) × 2.
        assert_eq!(included.len(), 13);

        let order_ref = &data["relationships"]["order"]["data"];
        assert_eq!(order_ref["type"], "orders");
        let o = find_included(&doc, "orders", order_ref["id"].as_str().unwrap()).unwrap();
        let a = &o["attributes"];
        assert_eq!(a["total_amount_with_taxes_cents"], 12_200);
        assert_eq!(a["total_amount_with_taxes_float"], 122.0);
        assert_eq!(a["formatted_total_amount_with_taxes"], "€122,00");
        assert_eq!(a["total_amount_cents"], 10_000);
        assert_eq!(a["subtotal_amount_cents"], 10_300);
        assert_eq!(a["currency_code"], "EUR");
        assert_eq!(a["customer_email"], "ann.smith@example.com");
        assert_eq!(a["metadata"], json!({"cart": "web"}));
        assert_linkages_resolve(&doc, o);

        // Line items: SKU lines sum to the subtotal; every item resolves.
        let lines: Vec<&Value> = o["relationships"]["line_items"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| find_included(&doc, "line_items", l["id"].as_str().unwrap()).unwrap())
            .collect();
        let sku_total: i64 = lines
            .iter()
            .filter(|l| l["attributes"]["item_type"] == "skus")
            .map(|l| l["attributes"]["total_amount_cents"].as_i64().unwrap())
            .sum();
        assert_eq!(sku_total, 10_300);
        for line in &lines {
            assert_linkages_resolve(&doc, line);
        }
        let sku_line = lines
            .iter()
            .find(|l| l["attributes"]["item_type"] == "skus")
            .unwrap();
        let item = &sku_line["relationships"]["item"]["data"];
        let sku = find_included(&doc, "skus", item["id"].as_str().unwrap()).unwrap();
        assert_eq!(
            sku["attributes"]["code"],
            sku_line["attributes"]["sku_code"]
        );

        let billing = &o["relationships"]["billing_address"]["data"];
        let billing = find_included(&doc, "addresses", billing["id"].as_str().unwrap()).unwrap();
        assert_eq!(billing["attributes"]["company"], "Smith Design S.r.l.");
        assert_eq!(billing["attributes"]["zip_code"], "20121");
    }

    #[test]
    fn guest_orders_have_a_null_customer_linkage() {
        let doc = authorize_body(&ExternalPayment::new(&Order::sample().guest(), "tok"));
        let order_id = doc["data"]["relationships"]["order"]["data"]["id"]
            .as_str()
            .unwrap();
        let o = find_included(&doc, "orders", order_id).unwrap();
        assert!(o["relationships"]["customer"]["data"].is_null());
        assert_eq!(o["attributes"]["guest"], true);
    }
}
