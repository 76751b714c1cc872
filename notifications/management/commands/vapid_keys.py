"""Print a new VAPID key pair (P-256) for VAPID_PRIVATE_KEY."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.management.base import BaseCommand, CommandParser

from notifications.push.config import b64url


class Command(BaseCommand):
    help = "Generate a VAPID key pair: set VAPID_PRIVATE_KEY (a secret) and VAPID_SUBJECT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--pem", action="store_true", help="print the private key as PEM")

    def handle(self, *args: Any, **options: Any) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        if options["pem"]:
            private = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
        else:
            private = b64url(key.private_numbers().private_value.to_bytes(32, "big"))
        public = b64url(
            key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )
        self.stdout.write(f"VAPID_PRIVATE_KEY={private}")
        self.stdout.write(f"# public key (GET /api/v1/push/public-key serves it): {public}")
