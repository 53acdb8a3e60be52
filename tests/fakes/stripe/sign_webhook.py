#!/usr/bin/env python3
"""Signs a webhook payload the way Stripe does, with the official `stripe` package's own code.

Used by tests/tests/stripe.rs to check that the Stripe plugin verifies the signatures Stripe's
SDK produces (and, with --verify, that the SDK accepts a header the other way round).

    sign_webhook.py --secret whsec_... [--timestamp UNIX] < payload    -> prints the header
    sign_webhook.py --secret whsec_... --verify HEADER < payload       -> exit 0 if valid

The payload is read from stdin as raw bytes and must be UTF-8 (Stripe's SDK signs the text).
"""

import argparse
import sys
import time

import stripe


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret", required=True)
    parser.add_argument("--timestamp", type=int, default=None)
    parser.add_argument("--verify", default=None, metavar="HEADER")
    parser.add_argument("--tolerance", type=int, default=300)
    args = parser.parse_args()

    payload = sys.stdin.buffer.read().decode("utf-8")
    signer = stripe.WebhookSignature

    if args.verify is not None:
        try:
            signer.verify_header(payload, args.verify, args.secret, args.tolerance)
        except stripe.SignatureVerificationError as e:
            print(f"invalid: {e}", file=sys.stderr)
            return 1
        return 0

    timestamp = args.timestamp if args.timestamp is not None else int(time.time())
    # The SDK's own signing code: HMAC-SHA256 hex of "{t}.{payload}".
    signature = signer._compute_signature(f"{timestamp}.{payload}", args.secret)
    sys.stdout.write(f"t={timestamp},{signer.EXPECTED_SCHEME}={signature}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
