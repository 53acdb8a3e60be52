#!/usr/bin/env python3
"""Builds an Adyen standard notification signed with the official `Adyen` package.

Usage: notification.py --hmac-key HEX --event-code CAPTURE --psp-reference P [options]
Prints the JSON body Adyen would POST to the webhook: {"live": "false", "notificationItems":
[{"NotificationRequestItem": {...}}]}, with additionalData.hmacSignature computed by
Adyen.util.generate_notification_sig (and checked with Adyen.util.is_valid_hmac_notification).
"""

import argparse
import json
import sys

from Adyen.util import generate_notification_sig, is_valid_hmac_notification


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--hmac-key", required=True, help="hex HMAC key of the webhook")
    p.add_argument("--event-code", required=True)
    p.add_argument("--psp-reference", required=True)
    p.add_argument("--original-reference", default="")
    p.add_argument("--merchant-account", default="AcmeECOM")
    p.add_argument("--merchant-reference", default="")
    p.add_argument("--value", type=int, default=0)
    p.add_argument("--currency", default="EUR")
    p.add_argument("--success", default="true", choices=["true", "false"])
    p.add_argument("--reason", default="")
    args = p.parse_args()

    item = {
        "amount": {"currency": args.currency, "value": args.value},
        "eventCode": args.event_code,
        "eventDate": "2024-05-02T10:00:00+02:00",
        "merchantAccountCode": args.merchant_account,
        "merchantReference": args.merchant_reference,
        "pspReference": args.psp_reference,
        "reason": args.reason,
        "success": args.success,
    }
    if args.original_reference:
        item["originalReference"] = args.original_reference
    signature = generate_notification_sig(item, args.hmac_key).decode("utf-8")
    item["additionalData"] = {"hmacSignature": signature}
    notification = {"live": "false", "notificationItems": [{"NotificationRequestItem": item}]}
    if not is_valid_hmac_notification(notification, args.hmac_key):
        print("the Adyen library rejects its own signature", file=sys.stderr)
        return 1
    json.dump(notification, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
