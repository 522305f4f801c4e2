"""Schemathesis hooks for fuzzing a running Flashspin app (tests/openapi.rs).

They give the fuzzer what a real client has and a generator cannot guess:

- an SMS gateway: a small HTTP server the app posts login codes to, so the
  hooks can sign in like a shopper does (send a code, read it, log in);
- a signed-in shopper's token on the routes that need one, fetched again
  when the app answers 401 (after the fuzzer logged the session out);
- the admin key on the operator's routes;
- a valid `flashspin-signature` on payment webhooks generated as valid,
  computed over the exact bytes sent;
- a sale window around now for half the vouchers generated as valid, so
  that chains of calls (create, buy, pay, redeem) reach past the window
  checks instead of stopping at 409 `sale_not_started`;
- a tally of every response by operation and status, written as JSON when
  the run ends, which the test checks and the docs quote.

Settings come from the environment: FLASHSPIN_BASE_URL, FLASHSPIN_SMS_PORT,
FLASHSPIN_ADMIN_KEY, FLASHSPIN_WEBHOOK_SECRET, FLASHSPIN_FUZZ_TALLY.
"""

import atexit
import collections
import hashlib
import hmac
import http.server
import datetime
import json
import os
import random
import secrets
import threading
import time

import requests
import schemathesis

BASE_URL = os.environ["FLASHSPIN_BASE_URL"].rstrip("/")
SMS_PORT = int(os.environ["FLASHSPIN_SMS_PORT"])
ADMIN_KEY = os.environ["FLASHSPIN_ADMIN_KEY"]
WEBHOOK_SECRET = os.environ["FLASHSPIN_WEBHOOK_SECRET"].encode()
TALLY_PATH = os.environ["FLASHSPIN_FUZZ_TALLY"]


# --- The SMS gateway -------------------------------------------------------

_codes = {}
_codes_changed = threading.Condition()


class _SmsGateway(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        try:
            message = json.loads(self.rfile.read(length))
            with _codes_changed:
                _codes[message["phone"]] = message["code"]
                _codes_changed.notify_all()
        except (ValueError, KeyError, TypeError):
            pass
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


_gateway = http.server.ThreadingHTTPServer(("127.0.0.1", SMS_PORT), _SmsGateway)
_gateway.daemon_threads = True
threading.Thread(target=_gateway.serve_forever, daemon=True).start()


def _code_for(phone, timeout=10.0):
    deadline = time.monotonic() + timeout
    with _codes_changed:
        while phone not in _codes:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no login code reached the gateway for {phone}")
            _codes_changed.wait(left)
        return _codes.pop(phone)


def sign_in():
    """Signs a new shopper in as the page does; returns the session token."""
    # Not `random`: Hypothesis seeds it, and a repeated phone would meet
    # the resend gap.
    phone = "139" + "".join(secrets.choice("0123456789") for _ in range(8))
    sent = requests.post(f"{BASE_URL}/api/auth/code", json={"phone": phone}, timeout=10)
    sent.raise_for_status()
    code = _code_for(phone)
    login = requests.post(
        f"{BASE_URL}/api/auth/login", json={"phone": phone, "code": code}, timeout=10
    )
    login.raise_for_status()
    return login.json()["token"]


# --- Credentials -----------------------------------------------------------

# Operations that need a signed-in shopper, by path template.
SHOPPER_PATHS = (
    r"^/api/me(/.*)?$|^/api/auth/(refresh|logout)$|^/api/orders/"
    r"|^/api/vouchers/\{[^}]+\}/orders$|^/api/lottery/\{[^}]+\}/shares$"
)


@schemathesis.auth().apply_to(path_regex=SHOPPER_PATHS)
class Shopper:
    """A session token, kept until the app refuses it (401), then renewed."""

    def get(self, case, context):
        return sign_in()

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.auth().apply_to(path_regex=r"^/api/admin/")
class Operator:
    def get(self, case, context):
        return ADMIN_KEY

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


# --- Signed webhooks -------------------------------------------------------


def _is_positive(case):
    meta = getattr(case, "meta", None)
    return meta is not None and meta.generation.mode.is_positive


# Framing is the HTTP server's business, not the API's: a request whose
# framing headers lie is refused by the server (an empty 400) before any
# component runs, on Spin as on flashspin.
FRAMING_HEADERS = ("content-length", "transfer-encoding")


@schemathesis.hook
def before_call(context, case, kwargs):
    """Drops generated framing headers, then signs webhooks generated as
    valid over the bytes that are sent.

    Cases generated as invalid keep whatever signature header the generator
    made, so the app's refusal of a bad or missing signature is tested too.
    """
    if case.headers:
        for name in [n for n in case.headers if n.lower() in FRAMING_HEADERS]:
            del case.headers[name]
    if not _is_positive(case):
        return
    if case.path == "/api/admin/vouchers" and isinstance(case.body, dict):
        _open_sale_window(case.body)
    if case.path != "/api/payments/webhook":
        return
    body = json.dumps(case.body, separators=(",", ":")).encode()
    stamp = str(int(time.time()))
    digest = hmac.new(WEBHOOK_SECRET, stamp.encode() + b"." + body, hashlib.sha256)
    kwargs["data"] = body
    case.headers = case.headers or {}
    case.headers["content-type"] = "application/json"
    case.headers["flashspin-signature"] = f"t={stamp},v1={digest.hexdigest()}"


def _open_sale_window(voucher):
    # `random`, seeded by Hypothesis, so a run repeats from its seed.
    if random.random() < 0.5:
        now = datetime.datetime.now(datetime.timezone.utc)
        voucher["begin_time"] = (now - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        voucher["end_time"] = (now + datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- The tally -------------------------------------------------------------

_tally = collections.defaultdict(collections.Counter)
_tally_lock = threading.Lock()


@schemathesis.hook
def after_call(context, case, response):
    label = f"{case.method.upper()} {case.path}"
    with _tally_lock:
        _tally[label][str(response.status_code)] += 1


def _write_tally():
    with _tally_lock:
        by_operation = {label: dict(sorted(c.items())) for label, c in sorted(_tally.items())}
    total = sum(sum(c.values()) for c in by_operation.values())
    with open(TALLY_PATH, "w") as out:
        json.dump({"requests": total, "operations": by_operation}, out, indent=2)


atexit.register(_write_tally)
