//! The `orders` resource's attributes and everything CL includes with an order by default
//! (market, customer, addresses, line items and their items), shuffled as CL never
//! promises an order.

use serde_json::{Map, Value, json};

use super::jsonapi::{attrs, common_attrs, ident, put_money, resource, shuffle, tax_on};
use super::order::{Address, Customer, LineItem, Order};

impl Order {
    pub(super) fn attributes(&self) -> Map<String, Value> {
        let t = self.totals();
        let skus: i64 = self.line_items.iter().map(|l| l.quantity).sum();
        let mut a = attrs(json!({
            "number": self.number,
            "autorefresh": true,
            "place_async": false,
            "status": self.status,
            "payment_status": self.payment_status,
            "fulfillment_status": "unfulfilled",
            "guest": self.customer.is_none(),
            "editable": false,
            "customer_email": self.customer_email,
            "customer_type": "returning",
            "language_code": self.language_code,
            "currency_code": self.currency_code,
            "tax_included": self.tax_included,
            "tax_rate": self.tax_rate_bp as f64 / 10_000.0,
            "freight_taxable": true,
            "payment_method_taxable": false,
            "adjustment_taxable": false,
            "gift_card_taxable": false,
            "requires_billing_info": false,
            "country_code": self.country_code,
            "shipping_country_code_lock": null,
            "coupon_code": null,
            "gift_card_code": null,
        }));
        // Split in two: one json! this long exceeds the macro recursion limit.
        a.extend(attrs(json!({
            "skus_count": skus,
            "line_item_options_count": 0,
            "shipments_count": i64::from(self.shipping_cents != 0),
            "tax_calculations_count": 0,
            "validations_count": 0,
            "errors_count": 0,
            "payment_source_details": { "type": "external_payment" },
            "token": self.token,
            "cart_url": null,
            "return_url": null,
            "terms_url": null,
            "privacy_url": null,
            "checkout_url": null,
            "placed_at": null,
            "approved_at": null,
            "cancelled_at": null,
            "payment_updated_at": null,
            "fulfillment_updated_at": null,
            "refreshed_at": null,
            "archived_at": null,
            "expires_at": null,
        })));
        let c = &self.currency_code;
        let money = [
            ("subtotal_amount", t.subtotal),
            ("shipping_amount", t.shipping),
            ("payment_method_amount", 0),
            ("discount_amount", t.discount),
            ("adjustment_amount", 0),
            ("gift_card_amount", 0),
            ("total_tax_amount", t.total_tax),
            ("subtotal_tax_amount", t.subtotal_tax),
            ("shipping_tax_amount", t.shipping_tax),
            ("payment_method_tax_amount", 0),
            ("adjustment_tax_amount", 0),
            ("total_amount", t.total),
            ("total_taxable_amount", t.total),
            ("subtotal_taxable_amount", t.subtotal + t.discount),
            ("shipping_taxable_amount", t.shipping),
            ("payment_method_taxable_amount", 0),
            ("adjustment_taxable_amount", 0),
            ("total_amount_with_taxes", t.total_with_taxes),
            ("fees_amount", 0),
            ("duty_amount", 0),
            ("place_total_amount", t.total_with_taxes),
        ];
        for (field, cents) in money {
            put_money(&mut a, field, cents, c);
        }
        common_attrs(&mut a, &self.metadata);
        a
    }

    /// Every line item CL lists: the SKU lines, then a shipment line and a promotion line
    /// when the order has shipping or a discount.
    pub(super) fn all_line_items(&self) -> Vec<LineRow> {
        let mut rows: Vec<LineRow> = self.line_items.iter().map(LineRow::from_sku).collect();
        // The ids of the extra lines derive from the order id so they stay stable.
        let stem: String = self.id.chars().take(9).collect();
        if self.shipping_cents != 0 {
            rows.push(LineRow {
                id: format!("{stem}S"),
                item_type: "shipments",
                item_id: format!("{stem}H"),
                sku_code: None,
                name: format!("Shipment #{}/S/001", self.number),
                quantity: 1,
                unit_amount_cents: self.shipping_cents,
            });
        }
        if self.discount_cents != 0 {
            rows.push(LineRow {
                id: format!("{stem}D"),
                item_type: "fixed_amount_promotions",
                item_id: format!("{stem}P"),
                sku_code: None,
                name: "Welcome discount".into(),
                quantity: 1,
                unit_amount_cents: self.discount_cents,
            });
        }
        rows
    }

    /// The order followed by everything CL includes with it by default, shuffled (the
    /// order resource is never first): find resources by type and id, not by position.
    pub fn included(&self) -> Vec<Value> {
        let mut out = vec![self.resource(), self.market_resource()];
        out.extend(self.customer.as_ref().map(customer_resource));
        out.push(address_resource(&self.shipping_address));
        out.push(address_resource(&self.billing_address));
        for row in self.all_line_items() {
            out.push(row.resource(&self.currency_code, self.tax_rate_bp, self.tax_included));
            out.push(row.item_resource(self));
        }
        shuffle(&mut out, &self.id);
        out
    }

    fn market_resource(&self) -> Value {
        let m = &self.market;
        let mut a = attrs(json!({
            "number": m.number,
            "name": m.name,
            "code": m.code,
            "facebook_pixel_id": null,
            "checkout_url": null,
            "external_prices_url": null,
            "external_order_validation_url": null,
            "private": false,
            "shipping_cost_cutoff": null,
            "disabled_at": null,
            "external_includes": null,
        }));
        common_attrs(&mut a, &json!({}));
        let rels = vec![
            ("merchant", None),
            ("price_list", None),
            ("inventory_model", None),
            ("tax_calculator", None),
        ];
        resource("markets", &m.id, a, rels)
    }
}

fn customer_resource(c: &Customer) -> Value {
    let mut a = attrs(json!({
        "email": c.email,
        "status": "repeat",
        "has_password": true,
        "total_orders_count": 3,
        "shopper_reference": null,
        "profile_id": null,
        "tax_exemption_code": null,
        "anonymization_info": null,
        "anonymization_status": null,
    }));
    common_attrs(&mut a, &json!({}));
    let rels = vec![
        ("customer_group", None),
        ("customer_addresses", None),
        ("customer_payment_sources", None),
        ("orders", None),
    ];
    resource("customers", &c.id, a, rels)
}

fn address_resource(ad: &Address) -> Value {
    let full_name = format!("{} {}", ad.first_name, ad.last_name);
    let line = match &ad.line_2 {
        Some(l2) => format!("{} {l2}", ad.line_1),
        None => ad.line_1.clone(),
    };
    let full_address = format!(
        "{line}, {} {} {} ({}) {}",
        ad.zip_code, ad.city, ad.state_code, ad.country_code, ad.phone
    );
    let mut a = attrs(json!({
        "business": ad.company.is_some(),
        "first_name": ad.first_name,
        "last_name": ad.last_name,
        "company": ad.company,
        "full_name": ad.company.clone().unwrap_or_else(|| full_name.clone()),
        "line_1": ad.line_1,
        "line_2": ad.line_2,
        "city": ad.city,
        "zip_code": ad.zip_code,
        "state_code": ad.state_code,
        "country_code": ad.country_code,
        "phone": ad.phone,
        "full_address": full_address,
        "name": format!("{full_name}, {full_address}"),
        "email": ad.email,
        "notes": null,
        "lat": null,
        "lng": null,
        "is_localized": false,
        "is_geocoded": false,
        "provider_name": null,
        "map_url": null,
        "static_map_url": null,
        "billing_info": null,
    }));
    common_attrs(&mut a, &json!({}));
    resource(
        "addresses",
        &ad.id,
        a,
        vec![("geocoder", None), ("tags", None)],
    )
}

/// One line of `order.line_items`, whatever its item type.
pub(super) struct LineRow {
    pub(super) id: String,
    item_type: &'static str,
    item_id: String,
    sku_code: Option<String>,
    name: String,
    quantity: i64,
    unit_amount_cents: i64,
}

impl LineRow {
    fn from_sku(l: &LineItem) -> LineRow {
        LineRow {
            id: l.id.clone(),
            item_type: "skus",
            item_id: l.sku_id.clone(),
            sku_code: Some(l.sku_code.clone()),
            name: l.name.clone(),
            quantity: l.quantity,
            unit_amount_cents: l.unit_amount_cents,
        }
    }

    fn resource(&self, currency: &str, tax_rate_bp: i64, tax_included: bool) -> Value {
        let total = self.quantity * self.unit_amount_cents;
        let mut a = attrs(json!({
            "sku_code": self.sku_code,
            "bundle_code": null,
            "quantity": self.quantity,
            "currency_code": currency,
            "name": self.name,
            "image_url": self.sku_code.as_ref().map(|c| format!("https://img.example.com/skus/{c}.png")),
            "discount_breakdown": {},
            "tax_rate": tax_rate_bp as f64 / 10_000.0,
            "tax_breakdown": {},
            "item_type": self.item_type,
            "frequency": null,
            "coupon_code": null,
            "rule_outcomes": null,
        }));
        put_money(&mut a, "unit_amount", self.unit_amount_cents, currency);
        put_money(
            &mut a,
            "compare_at_amount",
            self.unit_amount_cents,
            currency,
        );
        put_money(&mut a, "options_amount", 0, currency);
        put_money(&mut a, "discount", 0, currency);
        put_money(&mut a, "total_amount", total, currency);
        let tax = tax_on(total, tax_rate_bp, tax_included);
        put_money(&mut a, "tax_amount", tax, currency);
        common_attrs(&mut a, &json!({}));
        let rels = vec![
            ("order", None),
            ("item", Some(ident(self.item_type, &self.item_id))),
            ("line_item_options", None),
            ("events", None),
            ("tags", None),
        ];
        resource("line_items", &self.id, a, rels)
    }

    /// The included `item` of the line: a `skus`, `shipments` or promotion resource.
    fn item_resource(&self, order: &Order) -> Value {
        let currency = order.currency_code.as_str();
        let mut a = match self.item_type {
            "skus" => attrs(json!({
                "code": self.sku_code,
                "name": self.name,
                "description": format!("{} — simulated catalogue entry", self.name),
                "image_url": self.sku_code.as_ref().map(|c| format!("https://img.example.com/skus/{c}.png")),
                "pieces_per_pack": null,
                "weight": 300.0,
                "unit_of_weight": "gr",
                "hs_tariff_number": "6109100010",
                "do_not_ship": false,
                "do_not_track": false,
            })),
            "shipments" => {
                let mut a = attrs(json!({
                    "number": format!("{}/S/001", order.number),
                    "status": "upcoming",
                    "currency_code": currency,
                    "skus_count": order.line_items.iter().map(|l| l.quantity).sum::<i64>(),
                }));
                put_money(&mut a, "cost_amount", self.unit_amount_cents, currency);
                a
            }
            _ => {
                let mut a = attrs(json!({ "name": self.name, "currency_code": currency }));
                put_money(&mut a, "fixed_amount", -self.unit_amount_cents, currency);
                a
            }
        };
        common_attrs(&mut a, &json!({}));
        resource(self.item_type, &self.item_id, a, vec![("events", None)])
    }
}
